//! Prometheus metrics (text format 0.0.4) and `/healthz`, on a minimal HTTP/1.1 server: one
//! request per connection, GET only. Metrics:
//!
//! - `vfnet_dp_devices{resource}`, `vfnet_dp_devices_healthy{resource}`: advertised devices;
//! - `vfnet_dp_allocations_total{resource}`, `vfnet_dp_allocation_errors_total{resource}`;
//! - `vfnet_dp_registrations_total{resource}`: registrations with kubelet (one per start and per
//!   kubelet restart);
//! - `vfnet_dp_rescans_total`, `vfnet_dp_rescan_duration_seconds_sum`,
//!   `vfnet_dp_rescan_duration_seconds_last`;
//! - `vfnet_dp_events_total{source}`: what triggered rescans (link, uevent, periodic, reload);
//! - `vfnet_dp_pool_reloads_total`, `vfnet_dp_pool_reload_errors_total`.
//!
//! `/healthz` answers 200 while the scan loop has completed a scan recently, 503 otherwise.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default, Clone)]
struct PoolMetrics {
    devices: usize,
    healthy: usize,
    allocations: u64,
    allocation_errors: u64,
    registrations: u64,
}

#[derive(Debug, Default)]
struct Inner {
    pools: BTreeMap<String, PoolMetrics>,
    rescans: u64,
    rescan_seconds_sum: f64,
    rescan_seconds_last: f64,
    last_rescan: Option<Instant>,
    events: BTreeMap<&'static str, u64>,
    reloads: u64,
    reload_errors: u64,
}

/// The daemon's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets a pool's device gauges.
    pub fn set_pool(&self, resource: &str, devices: usize, healthy: usize) {
        let mut m = self.lock();
        let p = m.pools.entry(resource.to_owned()).or_default();
        p.devices = devices;
        p.healthy = healthy;
    }

    /// Forgets a pool that is gone.
    pub fn remove_pool(&self, resource: &str) {
        self.lock().pools.remove(resource);
    }

    /// Counts an Allocate call.
    pub fn allocation(&self, resource: &str, ok: bool) {
        let mut m = self.lock();
        let p = m.pools.entry(resource.to_owned()).or_default();
        if ok {
            p.allocations += 1;
        } else {
            p.allocation_errors += 1;
        }
    }

    /// Counts a registration with kubelet.
    pub fn registration(&self, resource: &str) {
        self.lock().pools.entry(resource.to_owned()).or_default().registrations += 1;
    }

    /// Registrations of `resource` so far.
    pub fn registrations(&self, resource: &str) -> u64 {
        self.lock().pools.get(resource).map_or(0, |p| p.registrations)
    }

    /// Counts a scan and its duration.
    pub fn rescan(&self, took: Duration) {
        let mut m = self.lock();
        m.rescans += 1;
        m.rescan_seconds_sum += took.as_secs_f64();
        m.rescan_seconds_last = took.as_secs_f64();
        m.last_rescan = Some(Instant::now());
    }

    /// Counts what triggered a scan.
    pub fn event(&self, source: &'static str) {
        *self.lock().events.entry(source).or_default() += 1;
    }

    /// Counts a pools-file reload.
    pub fn reload(&self, ok: bool) {
        let mut m = self.lock();
        m.reloads += 1;
        if !ok {
            m.reload_errors += 1;
        }
    }

    /// True if a scan completed within `max_age`.
    pub fn fresh(&self, max_age: Duration) -> bool {
        self.lock().last_rescan.is_some_and(|t| t.elapsed() <= max_age)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::with_capacity(1024);
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let per_pool = |f: &dyn Fn(&PoolMetrics) -> String| -> Vec<(String, String)> {
            m.pools.iter().map(|(r, p)| (format!("{{resource=\"{}\"}}", escape(r)), f(p))).collect()
        };
        family("vfnet_dp_devices", "gauge", "Devices advertised to kubelet.", per_pool(&|p| p.devices.to_string()));
        family(
            "vfnet_dp_devices_healthy",
            "gauge",
            "Devices advertised Healthy.",
            per_pool(&|p| p.healthy.to_string()),
        );
        family(
            "vfnet_dp_allocations_total",
            "counter",
            "Successful Allocate calls.",
            per_pool(&|p| p.allocations.to_string()),
        );
        family(
            "vfnet_dp_allocation_errors_total",
            "counter",
            "Refused Allocate calls.",
            per_pool(&|p| p.allocation_errors.to_string()),
        );
        family(
            "vfnet_dp_registrations_total",
            "counter",
            "Registrations with kubelet.",
            per_pool(&|p| p.registrations.to_string()),
        );
        family("vfnet_dp_rescans_total", "counter", "Node scans.", vec![(String::new(), m.rescans.to_string())]);
        family(
            "vfnet_dp_rescan_duration_seconds_sum",
            "counter",
            "Time spent scanning.",
            vec![(String::new(), format!("{:.6}", m.rescan_seconds_sum))],
        );
        family(
            "vfnet_dp_rescan_duration_seconds_last",
            "gauge",
            "Duration of the last scan.",
            vec![(String::new(), format!("{:.6}", m.rescan_seconds_last))],
        );
        family(
            "vfnet_dp_events_total",
            "counter",
            "Scan triggers by source.",
            m.events.iter().map(|(s, n)| (format!("{{source=\"{s}\"}}"), n.to_string())).collect(),
        );
        family(
            "vfnet_dp_pool_reloads_total",
            "counter",
            "Pools file reloads.",
            vec![(String::new(), m.reloads.to_string())],
        );
        family(
            "vfnet_dp_pool_reload_errors_total",
            "counter",
            "Pools file reloads refused (the last good pools stay).",
            vec![(String::new(), m.reload_errors.to_string())],
        );
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop`. `/healthz` is healthy while a scan
/// completed within `stale_after`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stale_after: Duration, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &metrics, stale_after).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics, stale_after: Duration) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let read = async {
        let mut chunk = [0u8; 512];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
        ("GET", "/healthz") if metrics.fresh(stale_after) => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/healthz") => ("503 Service Unavailable", "text/plain", "no recent node scan\n".to_owned()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_owned()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families() {
        let m = Metrics::default();
        m.set_pool("vfnet.dev/a", 4, 3);
        m.allocation("vfnet.dev/a", true);
        m.allocation("vfnet.dev/a", false);
        m.registration("vfnet.dev/a");
        m.rescan(Duration::from_millis(5));
        m.event("link");
        m.reload(false);
        let text = m.render();
        for line in [
            "vfnet_dp_devices{resource=\"vfnet.dev/a\"} 4",
            "vfnet_dp_devices_healthy{resource=\"vfnet.dev/a\"} 3",
            "vfnet_dp_allocations_total{resource=\"vfnet.dev/a\"} 1",
            "vfnet_dp_allocation_errors_total{resource=\"vfnet.dev/a\"} 1",
            "vfnet_dp_registrations_total{resource=\"vfnet.dev/a\"} 1",
            "vfnet_dp_rescans_total 1",
            "vfnet_dp_events_total{source=\"link\"} 1",
            "vfnet_dp_pool_reload_errors_total 1",
            "# TYPE vfnet_dp_devices gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(m.fresh(Duration::from_secs(5)));
    }
}

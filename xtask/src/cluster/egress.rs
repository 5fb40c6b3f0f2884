//! The API server's way to the node's kubelet (`kubectl logs`, `exec`, node proxy): the API
//! server runs on the host and the node's address is the guest's, which the host cannot reach.
//! The API server's egress selector ("cluster" traffic, HTTP CONNECT over a unix socket, the
//! Konnectivity interface) sends those connections here; this proxy lets through only the
//! node's kubelet and connects it to QEMU's forward of the kubelet port on the host's loopback.
//! Anything else is refused (403): no connection ever leaves this machine.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;

use anyhow::{Context, Result};

use super::net;

/// The API server's egress selector configuration, pointing at the proxy's socket.
pub(crate) fn selector_config(socket: &Path) -> String {
    format!(
        "apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
  - name: cluster
    connection:
      proxyProtocol: HTTPConnect
      transport:
        uds:
          udsName: {}
",
        socket.display()
    )
}

/// Starts the proxy on `socket` in a background thread; it lives as long as this process.
pub(crate) fn start(socket: &Path) -> Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).with_context(|| format!("cannot listen on {}", socket.display()))?;
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = serve(conn);
            });
        }
    });
    Ok(())
}

/// One CONNECT request: the node's kubelet is forwarded, anything else refused.
fn serve(conn: UnixStream) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut conn = conn;
    let target = request.strip_prefix("CONNECT ").and_then(|r| r.split_whitespace().next()).unwrap_or_default();
    let kubelet = format!("{}:{}", net::NODE_IP, net::KUBELET_PORT);
    if target != kubelet {
        conn.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n")?;
        return Ok(());
    }
    let upstream = match TcpStream::connect((net::APISERVER_BIND, net::KUBELET_FORWARD_PORT)) {
        Ok(s) => s,
        Err(_) => {
            conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")?;
            return Ok(());
        }
    };
    conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    // Bytes the reader buffered past the headers belong to the tunnel.
    let buffered = reader.buffer().to_vec();
    let mut up_write = upstream.try_clone()?;
    up_write.write_all(&buffered)?;
    let mut down_read = upstream;
    let mut conn_write = conn.try_clone()?;
    let to_kubelet = thread::spawn(move || {
        let _ = std::io::copy(&mut reader.into_inner(), &mut up_write);
        let _ = up_write.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut down_read, &mut conn_write);
    let _ = conn_write.shutdown(std::net::Shutdown::Write);
    let _ = to_kubelet.join();
    Ok(())
}

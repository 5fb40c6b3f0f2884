//! The CNI plugin's side of the node daemon's socket (`<runDir>/daemon.sock`): asking for a
//! VfProfile that is not in `profileDir` (protocol: [`vfnet_types::node_socket`]).
//!
//! Blocking std I/O with a deadline on every call: one request, one answer, no runtime. The
//! daemon holds the API credentials and the watch, so the plugin needs no Kubernetes client.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use vfnet_types::node_socket::{MAX_RESPONSE_BYTES, Request, Response, WireError};

/// Why the daemon gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing listens (no daemon, or a stale socket).
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The exchange broke off.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// No answer in time.
    #[error("no answer within {}s", .0.as_secs_f32())]
    TimedOut(Duration),
    /// An answer that is not the protocol's.
    #[error("unusable answer: {0}")]
    Wire(#[from] WireError),
}

/// Asks the daemon listening on `socket` for VfProfile `name`, all within `budget`.
pub fn ask_profile(socket: &Path, name: &str, budget: Duration) -> Result<Response, AskError> {
    ask(socket, &Request::Profile(name.to_owned()), budget)
}

/// Sends `request` to the daemon listening on `socket` and reads its answer, all within `budget`.
pub fn ask(socket: &Path, request: &Request, budget: Duration) -> Result<Response, AskError> {
    let deadline = Instant::now() + budget;
    let left = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let timed_out = || AskError::TimedOut(budget);
    let io = |e: std::io::Error| match e.kind() {
        // What a read or write timeout yields.
        ErrorKind::WouldBlock | ErrorKind::TimedOut => timed_out(),
        _ => AskError::Io(e),
    };
    // A connect to a unix socket does not wait for the daemon to accept (the backlog does).
    let mut stream = UnixStream::connect(socket).map_err(AskError::Connect)?;
    stream.set_write_timeout(Some(left().ok_or_else(timed_out)?)).map_err(AskError::Io)?;
    stream.write_all(&request.to_line()).map_err(io)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    while !answer.contains(&b'\n') {
        // Each read gets what is left of the budget, so a daemon that dribbles cannot extend it.
        stream.set_read_timeout(Some(left().ok_or_else(timed_out)?)).map_err(AskError::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
        if answer.len() > MAX_RESPONSE_BYTES + 1 {
            return Err(WireError::TooLong { limit: MAX_RESPONSE_BYTES }.into());
        }
    }
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(Response::parse(line)?)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A daemon stand-in answering one connection with `answer` (after reading the request).
    fn one_answer(socket: &Path, answer: Vec<u8>) -> std::thread::JoinHandle<Vec<u8>> {
        let listener = UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8];
            while s.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
                request.push(byte[0]);
            }
            let _ = s.write_all(&answer);
            request
        })
    }

    #[test]
    fn asks_one_line_and_reads_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("daemon.sock");
        let daemon = one_answer(&socket, b"\"notFound\"\n".to_vec());
        assert_eq!(ask_profile(&socket, "tenant-a", Duration::from_secs(3)).unwrap(), Response::NotFound);
        assert_eq!(daemon.join().unwrap(), b"{\"profile\":\"tenant-a\"}");
    }

    #[test]
    fn no_daemon_a_silent_one_or_a_garbled_answer_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("daemon.sock");
        let e = ask_profile(&socket, "a", Duration::from_secs(3)).unwrap_err();
        assert!(matches!(&e, AskError::Connect(io) if io.kind() == ErrorKind::NotFound), "{e}");

        // Bound, never accepting: the connection sits in the backlog.
        let silent = UnixListener::bind(&socket).unwrap();
        let t = Instant::now();
        let e = ask_profile(&socket, "a", Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.to_string(), "no answer within 0.3s");
        assert!(t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(2));
        drop(silent);
        std::fs::remove_file(&socket).unwrap();

        let daemon = one_answer(&socket, b"{\"profile\":\n".to_vec());
        let e = ask_profile(&socket, "a", Duration::from_secs(3)).unwrap_err();
        assert!(e.to_string().starts_with("unusable answer: not a node socket message"), "{e}");
        daemon.join().unwrap();
    }
}

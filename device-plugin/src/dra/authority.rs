//! kubelet's plugin watcher dials a registration socket with grpc-go's passthrough target (the
//! socket's path, no `unix:` scheme and no `WithAuthority`: pkg/kubelet/pluginmanager/
//! operationexecutor, `dial`), so its HTTP/2 `:authority` is the percent-encoded path
//! (`%2Fvar%2Flib%2Fkubelet%2F...`). RFC 3986 allows no `%` in a host, and the `h2` server that
//! tonic serves on refuses such a request with RST_STREAM PROTOCOL_ERROR: seen on the real
//! kubelet 1.37 (`failed to get plugin info using RPC GetInfo ... PROTOCOL_ERROR`). The device
//! manager and the DRA manager set `localhost` themselves; the plugin watcher does not
//! (kubernetes#108254, #109081; the device-manager fix was kubernetes#112597).
//!
//! So the registration socket is served through this shim: every connection's client-to-server
//! byte stream is parsed as HTTP/2 frames, each request's header block (HEADERS and its
//! CONTINUATIONs) is HPACK-decoded with the connection's decoder, its `:authority` replaced with
//! `localhost`, and re-encoded with the connection's encoder as one HEADERS frame; every other
//! frame, and the whole server-to-client direction, passes through untouched. Both HPACK tables
//! stay at the protocol's default size (4096), which is what the `h2` server advertises.

use std::io;

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// The client's connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame types (RFC 9113 §6).
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
/// Flags.
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The default SETTINGS_MAX_FRAME_SIZE, which the `h2` server keeps.
const MAX_FRAME: usize = 16_384;
/// The `:authority` every request gets.
const AUTHORITY: &[u8] = b"localhost";

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2 from kubelet: {what}"))
}

/// One frame: type, flags, stream, payload.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 9];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    if len > MAX_FRAME {
        return Err(bad(&format!("a {len}-byte frame, over the {MAX_FRAME} advertised")));
    }
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Ok(Some(Frame { kind: head[3], flags: head[4], stream, payload }))
}

fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<Vec<u8>> {
    if payload.len() > MAX_FRAME {
        return Err(bad("a rewritten header block over one frame"));
    }
    let len = payload.len();
    let mut out = Vec::with_capacity(9 + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The header block fragment of a HEADERS frame, without padding and priority fields.
fn headers_fragment(f: &Frame) -> io::Result<&[u8]> {
    let mut p = &f.payload[..];
    let mut pad = 0;
    if f.flags & PADDED != 0 {
        let (&n, rest) = p.split_first().ok_or_else(|| bad("PADDED HEADERS without a pad length"))?;
        pad = usize::from(n);
        p = rest;
    }
    if f.flags & PRIORITY != 0 {
        p = p.get(5..).ok_or_else(|| bad("PRIORITY HEADERS too short"))?;
    }
    p.get(..p.len().checked_sub(pad).ok_or_else(|| bad("padding longer than the frame"))?)
        .ok_or_else(|| bad("padding longer than the frame"))
}

/// Re-encodes one header block with `:authority` set to `localhost`.
fn rewrite(decoder: &mut Decoder<'_>, encoder: &mut Encoder<'_>, block: &[u8]) -> io::Result<Vec<u8>> {
    let headers = decoder.decode(block).map_err(|e| bad(&format!("HPACK: {e}")))?;
    let fixed = headers.iter().map(|(n, v)| (n.as_slice(), if n == b":authority" { AUTHORITY } else { v.as_slice() }));
    Ok(encoder.encode(fixed))
}

/// Copies `from` (kubelet) to `to` (the server), rewriting every request's `:authority`.
async fn client_to_server<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(mut from: R, mut to: W) -> io::Result<()> {
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(bad("no connection preface"));
    }
    to.write_all(PREFACE).await?;
    let (mut decoder, mut encoder) = (Decoder::new(), Encoder::new());
    // A header block split over CONTINUATION frames: (stream, END_STREAM, fragment so far).
    let mut pending: Option<(u32, u8, Vec<u8>)> = None;
    while let Some(f) = read_frame(&mut from).await? {
        match (f.kind, pending.take()) {
            (HEADERS, None) => {
                let fragment = headers_fragment(&f)?.to_vec();
                if f.flags & END_HEADERS == 0 {
                    pending = Some((f.stream, f.flags & END_STREAM, fragment));
                    continue;
                }
                let block = rewrite(&mut decoder, &mut encoder, &fragment)?;
                to.write_all(&frame_bytes(HEADERS, END_HEADERS | (f.flags & END_STREAM), f.stream, &block)?).await?;
            }
            (CONTINUATION, Some((stream, end_stream, mut fragment))) if f.stream == stream => {
                fragment.extend_from_slice(&f.payload);
                if f.flags & END_HEADERS == 0 {
                    pending = Some((stream, end_stream, fragment));
                    continue;
                }
                let block = rewrite(&mut decoder, &mut encoder, &fragment)?;
                to.write_all(&frame_bytes(HEADERS, END_HEADERS | end_stream, stream, &block)?).await?;
            }
            (_, Some(_)) | (CONTINUATION, None) => return Err(bad("a header block interrupted")),
            (kind, None) => to.write_all(&frame_bytes(kind, f.flags, f.stream, &f.payload)?).await?,
        }
        to.flush().await?;
    }
    to.shutdown().await
}

/// Serves one kubelet connection through the shim to `server` (the tonic side of a duplex pipe),
/// until either side closes.
pub async fn relay<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(client: S, server: DuplexStream) {
    let (client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, server_write) = tokio::io::split(server);
    let up = client_to_server(client_read, server_write);
    let down = async {
        let copied = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
        copied.map(|_| ())
    };
    let (up, down) = tokio::join!(up, down);
    if let Err(e) = up.and(down) {
        tracing::debug!(error = %e, "registration connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn authority_rewritten_other_frames_untouched() {
        let mut kubelet_enc = Encoder::new();
        let block = kubelet_enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/pluginregistration.Registration/GetInfo"),
            (b":authority", b"%2Fvar%2Flib%2Fkubelet%2Fplugins_registry%2Fvfnet.dev-reg.sock"),
            (b"content-type", b"application/grpc"),
        ]);
        let (first, second) = block.split_at(block.len() / 2);
        let mut input = PREFACE.to_vec();
        input.extend(frame_bytes(0x4, 0, 0, &[]).unwrap()); // SETTINGS
        input.extend(frame_bytes(HEADERS, 0, 1, first).unwrap());
        input.extend(frame_bytes(CONTINUATION, END_HEADERS, 1, second).unwrap());
        input.extend(frame_bytes(0x0, END_STREAM, 1, &[0, 0, 0, 0, 0]).unwrap()); // DATA
        let mut out = Vec::new();
        client_to_server(&input[..], &mut out).await.unwrap();

        assert_eq!(&out[..24], PREFACE);
        let mut rest = &out[24..];
        let settings = read_frame(&mut rest).await.unwrap().unwrap();
        assert_eq!((settings.kind, settings.payload.len()), (0x4, 0));
        let headers = read_frame(&mut rest).await.unwrap().unwrap();
        assert_eq!((headers.kind, headers.flags, headers.stream), (HEADERS, END_HEADERS, 1));
        let decoded = Decoder::new().decode(&headers.payload).unwrap();
        let get = |name: &[u8]| decoded.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(get(b":authority").as_deref(), Some(AUTHORITY));
        assert_eq!(get(b":path").as_deref(), Some(&b"/pluginregistration.Registration/GetInfo"[..]));
        let data = read_frame(&mut rest).await.unwrap().unwrap();
        assert_eq!((data.kind, data.flags, data.payload), (0x0, END_STREAM, vec![0; 5]));
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let mut out = Vec::new();
        assert!(client_to_server(&b"GET / HTTP/1.1\r\n\r\n........"[..], &mut out).await.is_err());
        let mut input = PREFACE.to_vec();
        input.extend(frame_bytes(CONTINUATION, END_HEADERS, 1, b"x").unwrap());
        assert!(client_to_server(&input[..], &mut Vec::new()).await.is_err());
    }
}

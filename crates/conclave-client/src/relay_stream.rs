//! TURN over TCP and TLS (RFC 8656 §3.1, RFC 6062 is not needed: the
//! allocation still relays UDP), for networks that let only TCP, or only
//! TLS to 443, out. The `turn` crate's client speaks to its server through
//! any `util::Conn`, so this is one over a byte stream: a message at a time
//! each way.
//!
//! Over a stream nothing marks where a message ends, but both kinds say
//! their own length: a STUN message is a 20-byte header whose bytes 2–3
//! give the length of what follows; ChannelData is a 4-byte header whose
//! bytes 2–3 give the data's length, padded to a multiple of 4 over
//! streams (RFC 8656 §12.5). The first two bits tell them apart (00 for
//! STUN, 01 for a channel number).
//!
//! A reader task and a writer task own the two halves of the stream, so
//! `recv_from` and `send_to` only wait on channels: the crate cancels them
//! in `select!`, and a read or write cut off midway would lose the framing.

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Messages queued each way, at most; the writer applies backpressure to
/// the crate, the reader to the stream.
const QUEUE: usize = 256;

/// How long [`StreamConn`]'s close waits for what is queued to leave and
/// the stream to shut down (a TLS close_notify, then FIN).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// STUN's header; ChannelData's is 4 bytes.
const STUN_HEADER: usize = 20;
const CHANNEL_HEADER: usize = 4;

/// What kind of message starts with `first4`, and how many bytes the whole
/// message takes on the stream (ChannelData with its padding); `None` when
/// it is neither, and the stream cannot be read further.
pub fn framed_len(first4: [u8; 4]) -> Option<(usize, usize)> {
    let len = usize::from(u16::from_be_bytes([first4[2], first4[3]]));
    match first4[0] >> 6 {
        0b00 => Some((STUN_HEADER + len, STUN_HEADER + len)),
        0b01 => {
            let message = CHANNEL_HEADER + len;
            Some((message, message.next_multiple_of(4)))
        }
        _ => None,
    }
}

/// A `util::Conn` over a TCP or TLS connection to the TURN server.
pub struct StreamConn {
    local: SocketAddr,
    server: SocketAddr,
    incoming: Mutex<mpsc::Receiver<Vec<u8>>>,
    /// Whole messages to write; an empty one asks the writer to shut the
    /// stream down.
    outgoing: mpsc::Sender<Vec<u8>>,
    /// Fires when the writer is done.
    written: Mutex<Option<oneshot::Receiver<()>>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl StreamConn {
    /// Takes over `stream`, connected from `local` to `server`.
    pub fn new<S>(stream: S, local: SocketAddr, server: SocketAddr) -> StreamConn
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let (delivered, incoming) = mpsc::channel(QUEUE);
        let (outgoing, to_write) = mpsc::channel(QUEUE);
        let (done, written) = oneshot::channel();
        StreamConn {
            local,
            server,
            incoming: Mutex::new(incoming),
            outgoing,
            written: Mutex::new(Some(written)),
            tasks: [
                tokio::spawn(read_messages(reader, delivered)),
                tokio::spawn(write_messages(writer, to_write, done)),
            ],
        }
    }
}

impl Drop for StreamConn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn read_messages<R: AsyncRead + Unpin>(mut reader: R, delivered: mpsc::Sender<Vec<u8>>) {
    loop {
        let mut head = [0u8; 4];
        if let Err(e) = reader.read_exact(&mut head).await {
            tracing::debug!(error = %e, "TURN stream closed");
            return;
        }
        let Some((message, framed)) = framed_len(head) else {
            tracing::warn!(
                first = ?head,
                "the TURN server sent something neither STUN nor ChannelData"
            );
            return;
        };
        let mut data = vec![0u8; framed];
        data[..4].copy_from_slice(&head);
        if let Err(e) = reader.read_exact(&mut data[4..]).await {
            tracing::debug!(error = %e, "TURN stream closed mid-message");
            return;
        }
        data.truncate(message);
        if delivered.send(data).await.is_err() {
            return;
        }
    }
}

async fn write_messages<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut to_write: mpsc::Receiver<Vec<u8>>,
    done: oneshot::Sender<()>,
) {
    while let Some(data) = to_write.recv().await {
        if data.is_empty() {
            break;
        }
        if let Err(e) = writer.write_all(&data).await {
            tracing::debug!(error = %e, "TURN stream write");
            return;
        }
        if let Err(e) = writer.flush().await {
            tracing::debug!(error = %e, "TURN stream flush");
            return;
        }
    }
    let _ = writer.shutdown().await;
    let _ = done.send(());
}

fn closed() -> util::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the connection to the TURN server closed",
    )
    .into()
}

#[async_trait::async_trait]
impl util::Conn for StreamConn {
    async fn connect(&self, _addr: SocketAddr) -> util::Result<()> {
        Err(util::Error::Other(
            "a TURN stream is connected when made".into(),
        ))
    }

    async fn recv(&self, buf: &mut [u8]) -> util::Result<usize> {
        self.recv_from(buf).await.map(|(n, _)| n)
    }

    /// One whole message; one longer than `buf` is cut short, as a
    /// datagram socket would (the crate's buffer is 64 KiB, STUN's limit).
    async fn recv_from(&self, buf: &mut [u8]) -> util::Result<(usize, SocketAddr)> {
        let data = self.incoming.lock().await.recv().await.ok_or_else(closed)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok((n, self.server))
    }

    async fn send(&self, buf: &[u8]) -> util::Result<usize> {
        self.send_to(buf, self.server).await
    }

    /// One whole message, to the server whatever `target` says: the crate
    /// sends only to its TURN server here (no STUN server is configured).
    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> util::Result<usize> {
        if buf.is_empty() {
            // Nothing to frame (and an empty message means shut down).
            return Ok(0);
        }
        let mut data = buf.to_vec();
        // ChannelData leaves padded over a stream; the crate pads what it
        // encodes, and this makes sure of it for anything else.
        if buf.first().is_some_and(|b| b >> 6 == 0b01) {
            data.resize(buf.len().next_multiple_of(4), 0);
        }
        self.outgoing.send(data).await.map_err(|_| closed())?;
        Ok(buf.len())
    }

    fn local_addr(&self) -> util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.server)
    }

    /// Lets what is queued leave, then shuts the stream down, so the
    /// server sees the connection end cleanly rather than reset.
    async fn close(&self) -> util::Result<()> {
        let _ = self.outgoing.send(Vec::new()).await;
        if let Some(written) = self.written.lock().await.take() {
            let _ = tokio::time::timeout(CLOSE_WAIT, written).await;
        }
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// The name a `turns:` server's certificate must carry: the URL's host,
/// an IP address for a literal.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_their_length_and_channel_data_is_padded() {
        // A STUN Binding request with 8 bytes of attributes.
        assert_eq!(framed_len([0x00, 0x01, 0x00, 0x08]), Some((28, 28)));
        // ChannelData on channel 0x4000 with 5 bytes: 9, padded to 12.
        assert_eq!(framed_len([0x40, 0x00, 0x00, 0x05]), Some((9, 12)));
        assert_eq!(framed_len([0x40, 0x01, 0x00, 0x08]), Some((12, 12)));
        // RTP (version 2) and anything else is neither.
        assert_eq!(framed_len([0x80, 0x60, 0x00, 0x01]), None);
        assert_eq!(framed_len([0xc0, 0x00, 0x00, 0x01]), None);
    }

    #[tokio::test]
    async fn whole_messages_cross_a_stream_split_anywhere() {
        use util::Conn;
        let (ours, mut theirs) = tokio::io::duplex(64);
        let server: SocketAddr = "192.0.2.1:3478".parse().expect("addr");
        let local: SocketAddr = "192.0.2.2:50000".parse().expect("addr");
        let conn = StreamConn::new(ours, local, server);
        // The server writes a STUN message and a padded ChannelData message
        // in one go; each arrives whole, the padding gone.
        let mut stun = vec![0x01, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[7; 12]);
        stun.extend_from_slice(&[1, 2, 3, 4]);
        let channel = [0x40, 0x00, 0x00, 0x03, 9, 8, 7, 0];
        let mut both = stun.clone();
        both.extend_from_slice(&channel);
        theirs.write_all(&both).await.expect("write");
        let mut buf = [0u8; 100];
        let (n, from) = conn.recv_from(&mut buf).await.expect("stun");
        assert_eq!((&buf[..n], from), (&stun[..], server));
        let (n, _) = conn.recv_from(&mut buf).await.expect("channel data");
        assert_eq!(&buf[..n], &channel[..7]);
        // What the client sends arrives as it was, ChannelData padded.
        conn.send_to(&[0x40, 0x00, 0x00, 0x01, 5], server)
            .await
            .expect("send");
        let mut got = [0u8; 8];
        theirs.read_exact(&mut got).await.expect("read");
        assert_eq!(got, [0x40, 0x00, 0x00, 0x01, 5, 0, 0, 0]);
        // The server hangs up: the next receive fails rather than waits.
        drop(theirs);
        assert!(conn.recv_from(&mut buf).await.is_err());
    }

    #[tokio::test]
    async fn close_lets_queued_messages_out_then_ends_the_stream() {
        use util::Conn;
        let (ours, mut theirs) = tokio::io::duplex(64);
        let addr: SocketAddr = "192.0.2.1:3478".parse().expect("addr");
        let conn = StreamConn::new(ours, addr, addr);
        let refresh = [0x00, 0x04, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        let mut message = refresh.to_vec();
        message.extend_from_slice(&[3; 12]);
        conn.send_to(&message, addr).await.expect("send");
        // An empty send is nothing, not a shutdown.
        assert_eq!(conn.send_to(&[], addr).await.expect("send"), 0);
        conn.close().await.expect("close");
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.expect("read to the end");
        assert_eq!(got, message);
    }
}

//! Slow bodies: connections that announce a large body and send it a byte at a time.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::background::Shared;
use super::{wire, SLOW_BODY_BYTES};

/// Holds the first wave of slow bodies until every connection is made, so that all of
/// them dribble at once (the broker cuts each off about a second after its head, sooner
/// than a thousand handshakes may take).
pub(super) struct Gate {
    wanted: u64,
    ready: AtomicU64,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    /// Longest wait at the gate: well within the broker's wait for a request head.
    const LIMIT: Duration = Duration::from_secs(5);

    pub(super) fn new(wanted: usize) -> Self {
        let (open, _) = tokio::sync::watch::channel(false);
        Self { wanted: wanted as u64, ready: AtomicU64::new(0), open }
    }

    /// Waits until everyone is ready, or [`Gate::LIMIT`] after the first to arrive.
    async fn pass(&self) {
        let mut open = self.open.subscribe();
        if self.ready.fetch_add(1, Ordering::Relaxed) + 1 >= self.wanted {
            self.open.send_replace(true);
        }
        let _ = tokio::time::timeout(Self::LIMIT, open.wait_for(|open| *open)).await;
    }
}

/// One slow-body connection after another from `source`, until the run stops; the first
/// waits at `gate`.
pub(super) async fn slow_body(shared: &Shared, source: IpAddr, byte_interval: Duration, gate: &Gate) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let counters = &shared.counters;
    let mut first = true;
    while !shared.stopped() {
        let Some(mut stream) = shared.connect(source).await else { continue };
        if std::mem::take(&mut first) {
            gate.pass().await;
        }
        let head = wire::post_head("/v1/tpm/finish", SLOW_BODY_BYTES);
        if let Err(e) = wire::send(&mut stream, &head, b"{").await {
            counters.failed("head", &e);
            continue;
        }
        // Open from here: a body under way.
        let _open = counters.opened();
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        let mut sent = 1usize;
        let mut peek = [0u8; 1];
        let ended = loop {
            if shared.stopped() {
                return;
            }
            tokio::select! {
                // The broker answered (or closed): read that answer whole.
                read = stream.read(&mut peek) => break read.map(|n| n > 0),
                () = tokio::time::sleep(byte_interval) => {
                    if sent >= SLOW_BODY_BYTES {
                        break Ok(false);
                    }
                    let write = async {
                        stream.write_all(b" ").await?;
                        stream.flush().await
                    };
                    if let Err(e) = write.await {
                        break Err(e);
                    }
                    sent += 1;
                }
            }
        };
        let held = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        match ended {
            Ok(true) => {
                // `peek` holds the first byte of "HTTP/1.1 408 ..."; the rest follows.
                let mut rest = Vec::with_capacity(256);
                let mut chunk = [0u8; 1024];
                let status = loop {
                    if let Some(status) = status_of(peek.first().copied(), &rest) {
                        break Some(status);
                    }
                    match tokio::time::timeout(wire::ANSWER_TIMEOUT, stream.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => rest.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                        _ => break None,
                    }
                };
                match status {
                    Some(status) => counters.answered(status),
                    None => counters.failed("answer", &io::Error::from(io::ErrorKind::InvalidData)),
                }
                counters.held_ms.lock().unwrap_or_else(PoisonError::into_inner).push(held);
            }
            Ok(false) => {
                counters.failed("cut off", &io::Error::from(io::ErrorKind::ConnectionReset));
                counters.held_ms.lock().unwrap_or_else(PoisonError::into_inner).push(held);
            }
            Err(e) => {
                counters.failed("dribble", &e);
                counters.held_ms.lock().unwrap_or_else(PoisonError::into_inner).push(held);
            }
        }
    }
}

/// The status code once the status line (`first` byte, then `rest`) is complete.
fn status_of(first: Option<u8>, rest: &[u8]) -> Option<u16> {
    let first = first?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let mut line = vec![first];
    line.extend_from_slice(rest.get(..end).unwrap_or_default());
    let line = String::from_utf8_lossy(&line);
    line.split(' ').nth(1).and_then(|code| code.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_is_read_from_its_first_byte_on() {
        assert_eq!(status_of(Some(b'H'), b"TTP/1.1 408 Request Timeout\r\n"), Some(408));
        assert_eq!(status_of(Some(b'H'), b"TTP/1.1 408"), None);
        assert_eq!(status_of(None, b"x\n"), None);
    }
}

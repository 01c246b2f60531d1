//! The guest's control port: its framed reports in, commands out.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// The guest's second serial port: everything it sent so far, and where the last marker
/// ended. OVMF prints its console here too, so the guest frames what it sends.
#[derive(Debug, Default)]
pub(super) struct ControlPort {
    stream: Option<UnixStream>,
    buffer: Vec<u8>,
    position: usize,
}

impl ControlPort {
    /// The port, connected to `stream`.
    pub(super) fn new(stream: UnixStream) -> Self {
        Self { stream: Some(stream), buffer: Vec::new(), position: 0 }
    }

    pub(super) fn send(&mut self, command: &str) -> anyhow::Result<()> {
        let stream = self.stream.as_mut().ok_or_else(|| anyhow!("no control port"))?;
        stream.write_all(format!("{command}\n").as_bytes()).context("write to the guest's control port")
    }

    /// Reads until `marker`; returns what came before it (since the last marker) and moves
    /// past it.
    pub(super) fn until(&mut self, marker: &str, deadline: Instant) -> anyhow::Result<String> {
        let needle = marker.as_bytes();
        loop {
            let unread = self.buffer.get(self.position..).unwrap_or_default();
            if let Some(at) = unread.windows(needle.len()).position(|w| w == needle) {
                let text = String::from_utf8_lossy(unread.get(..at).unwrap_or_default()).into_owned();
                self.position += at + needle.len();
                return Ok(text);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out waiting for {marker:?} from the guest");
            }
            let stream = self.stream.as_mut().ok_or_else(|| anyhow!("no control port"))?;
            stream.set_read_timeout(Some((deadline - now).min(Duration::from_secs(1))))?;
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk) {
                Ok(0) => bail!("the VM ended (control port closed) while waiting for {marker:?}"),
                Ok(n) => self.buffer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).context("read the guest's control port"),
            }
        }
    }

    pub(super) fn tail(&self) -> String {
        let tail = self.buffer.get(self.buffer.len().saturating_sub(2000)..).unwrap_or_default();
        String::from_utf8_lossy(tail).into_owned()
    }
}

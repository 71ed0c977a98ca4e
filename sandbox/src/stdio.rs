//! A guest's stdout and stderr: kept in memory up to a cap, and past it counted and dropped
//! while the guest's writes keep succeeding. A guest that prints too much loses lines, never
//! its call (a pipe that reports itself closed makes Rust's `print!` panic).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Most bytes one `check_write` permits: WASI's usual permit, so the host never allocates more
/// than this for one guest write.
const PERMIT: usize = 64 << 10;

/// What a capped stream kept and what it dropped.
#[derive(Default)]
struct Kept {
    bytes: Vec<u8>,
    dropped: u64,
}

/// One output stream of one invocation. Cheap to clone; clones share the buffer.
#[derive(Clone)]
pub(crate) struct CappedOutput {
    kept: Arc<Mutex<Kept>>,
    capacity: usize,
}

impl CappedOutput {
    pub(crate) fn new(capacity: usize) -> Self {
        CappedOutput {
            kept: Arc::new(Mutex::new(Kept::default())),
            capacity,
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep what fits under the cap and count the rest.
    fn take_in(&self, bytes: &[u8]) {
        let mut kept = self.kept();
        let room = self.capacity.saturating_sub(kept.bytes.len());
        let (fits, over) = bytes.split_at(bytes.len().min(room));
        kept.bytes.extend_from_slice(fits);
        kept.dropped += over.len() as u64;
    }

    /// The bytes kept, and how many past the cap were dropped, leaving the stream empty for
    /// the next call of a reused instance.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut kept = self.kept();
        (
            std::mem::take(&mut kept.bytes),
            std::mem::take(&mut kept.dropped),
        )
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.take_in(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(PERMIT)
    }
}

impl AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.take_in(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_past_the_cap_succeed_and_are_counted() {
        let mut out = CappedOutput::new(8);
        for _ in 0..3 {
            assert!(out.check_write().is_ok());
            out.write(Bytes::from_static(b"hello")).unwrap();
        }
        let (kept, dropped) = out.take();
        assert_eq!(kept, b"hellohel");
        assert_eq!(dropped, 7);
    }
}

//! `EventFd`: a non-blocking, close-on-exec Linux eventfd, the wake-up descriptor of the
//! process reactor and of event queues. It is readable while notified and not yet drained.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd counter: `notify` makes it readable, `drain` makes it quiet again.
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    /// A new eventfd, quiet.
    pub(crate) fn new() -> std::io::Result<EventFd> {
        // SAFETY: a plain syscall; the result is checked before it is owned.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Makes the descriptor readable.
    pub(crate) fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. It cannot block
        // (non-blocking), and a full counter (EAGAIN) still leaves it readable, which is
        // all that matters.
        unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Resets the counter: the descriptor stops being readable.
    pub(crate) fn drain(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd; EAGAIN
        // (counter already 0) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&raw mut count).cast(), 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

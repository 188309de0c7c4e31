//! A page of shared memory backed by a memfd: the storage under a worker's
//! heartbeat slot and metrics page. The master creates it; a process forked
//! from the master inherits the mapping, and a process that only receives
//! the descriptor (a worker forked by the preload zygote, which gets it over
//! a socket) maps the same memory with [`SharedPage::from_fd`].
//!
//! Knows nothing of what is stored: the callers lay out their atomics.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// One shared mapping of `len` bytes and the memfd it maps.
pub struct SharedPage {
    address: NonNull<libc::c_void>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is only reached through `as_ptr`, whose users access
// it with atomics; it is unmapped once, on drop.
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// A fresh zeroed page of `len` bytes; `name` shows in /proc/PID/maps.
    pub fn create(name: &std::ffi::CStr, len: usize) -> io::Result<SharedPage> {
        // SAFETY: memfd_create reads the NUL-terminated name and takes flags;
        // the result is checked before use.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let file = std::fs::File::from(fd);
        file.set_len(len as u64)?;
        SharedPage::map(OwnedFd::from(file), len)
    }

    /// Maps a page another process created (its memfd, received over a
    /// socket); `len` must be the length it was created with.
    pub fn from_fd(fd: OwnedFd, len: usize) -> io::Result<SharedPage> {
        let file = std::fs::File::from(fd);
        if file.metadata()?.len() < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared page is shorter than expected",
            ));
        }
        SharedPage::map(OwnedFd::from(file), len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<SharedPage> {
        use std::os::fd::AsRawFd;
        // SAFETY: a shared mapping of an fd we own, with no address hint;
        // the result is checked against MAP_FAILED before use.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let address = NonNull::new(address).expect("mmap returned a non-null address");
        Ok(SharedPage { address, len, fd })
    }

    /// The start of the mapping (page-aligned, zeroed when created).
    pub fn as_ptr(&self) -> NonNull<libc::c_void> {
        self.address
    }

    /// The memfd, to hand to a process that is not forked from this one.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `map`, once.
        unsafe {
            libc::munmap(self.address.as_ptr(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn a_second_mapping_of_the_fd_sees_the_same_memory() {
        let page = SharedPage::create(c"test-page", 4096).unwrap();
        let copy = SharedPage::from_fd(page.fd().try_clone_to_owned().unwrap(), 4096).unwrap();
        // SAFETY: both mappings are live, page-aligned and 4096 bytes long.
        let (a, b) = unsafe {
            (
                &*page.as_ptr().as_ptr().cast::<AtomicU64>(),
                &*copy.as_ptr().as_ptr().cast::<AtomicU64>(),
            )
        };
        assert_eq!(b.load(Ordering::Relaxed), 0);
        a.store(42, Ordering::Relaxed);
        assert_eq!(b.load(Ordering::Relaxed), 42);
    }

    #[test]
    fn a_short_fd_is_refused() {
        let page = SharedPage::create(c"test-page", 4096).unwrap();
        let fd = page.fd().try_clone_to_owned().unwrap();
        assert!(SharedPage::from_fd(fd, 8192).is_err());
    }
}

//! Memory shared between the master and one worker, backed by a memfd so it
//! crosses `exec` as well as `fork`: the master creates the region, keeps the
//! descriptor, and the worker program maps the same descriptor again from
//! the number it inherited. The heartbeat and the metrics page are built on
//! it; it knows nothing of what they store.
//!
//! The descriptor is close-on-exec: only a child that is handed the region
//! clears the flag on its own copy, after the fork. [`memfd_holding`] makes
//! the same kind of descriptor for bytes a child reads once (its handoff).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// Why an inherited descriptor cannot be mapped.
#[derive(Debug, thiserror::Error)]
pub enum SharedMemoryError {
    /// The operating system refused (memfd_create, ftruncate, fstat, mmap).
    #[error("{0}")]
    Os(#[from] io::Error),
    /// The inherited descriptor is not a region of the expected size (not
    /// what the master created, or from another build).
    #[error("the shared memory fd is {found} bytes, expected {expected}")]
    WrongSize { expected: usize, found: u64 },
}

/// A shared, zero-initialised mapping of `len` bytes and its memfd.
pub struct SharedRegion {
    address: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the region is plain memory that both processes reach only through
// atomics of the types built on it; the pointer is never handed out mutably.
unsafe impl Send for SharedRegion {}
// SAFETY: as above.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// Creates a fresh region of `len` zero bytes named `name` (shown in
    /// `/proc/PID/maps` as `/memfd:NAME`). Pages cost memory only once
    /// written.
    pub fn create(name: &CStr, len: usize) -> io::Result<SharedRegion> {
        let fd = memfd(name)?;
        // SAFETY: ftruncate on a descriptor we own; checked below.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        SharedRegion::map(fd, len)
    }

    /// Maps a region created by [`SharedRegion::create`] in another
    /// process from its inherited descriptor, checking its size.
    pub fn from_inherited(fd: OwnedFd, len: usize) -> Result<SharedRegion, SharedMemoryError> {
        let found = std::fs::File::from(fd.try_clone()?).metadata()?.len();
        if found != len as u64 {
            return Err(SharedMemoryError::WrongSize {
                expected: len,
                found,
            });
        }
        Ok(SharedRegion::map(fd, len)?)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<SharedRegion> {
        // SAFETY: a shared mapping of a descriptor of at least `len` bytes
        // with no address hint; the result is checked against MAP_FAILED
        // before use.
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
        let address = NonNull::new(address.cast::<u8>()).expect("mmap returned a non-null address");
        Ok(SharedRegion { address, len, fd })
    }

    /// The start of the mapping (page-aligned, `len` bytes, zeroed when
    /// created). Valid for as long as `self` lives.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.address
    }

    /// The memfd, to hand to a child.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A fresh, empty, close-on-exec memfd named `name`.
fn memfd(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; the result is
    // checked before use.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A close-on-exec memfd holding `bytes`, positioned at the start: the
/// child that inherits it reads them to the end.
pub fn memfd_holding(name: &CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    let mut file = std::fs::File::from(memfd(name)?);
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file.into())
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, once.
        unsafe {
            libc::munmap(self.address.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn first_word(region: &SharedRegion) -> &AtomicU64 {
        // SAFETY: the region is page-aligned, at least 8 bytes and live.
        unsafe { region.as_ptr().cast::<AtomicU64>().as_ref() }
    }

    #[test]
    fn a_second_mapping_of_the_descriptor_sees_the_same_memory() {
        let region = SharedRegion::create(c"test", 4096).unwrap();
        first_word(&region).store(42, Ordering::Relaxed);
        let fd = region.fd().try_clone_to_owned().unwrap();
        let again = SharedRegion::from_inherited(fd, 4096).unwrap();
        assert_eq!(first_word(&again).load(Ordering::Relaxed), 42);
        first_word(&again).store(7, Ordering::Relaxed);
        assert_eq!(first_word(&region).load(Ordering::Relaxed), 7);
    }

    #[test]
    fn a_memfd_holding_bytes_reads_back_from_the_start() {
        use std::io::Read;
        let fd = memfd_holding(c"test", b"handed over").unwrap();
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text).unwrap();
        assert_eq!(text, "handed over");
    }

    #[test]
    fn a_descriptor_of_another_size_is_refused() {
        let region = SharedRegion::create(c"test", 4096).unwrap();
        let fd = region.fd().try_clone_to_owned().unwrap();
        let err = SharedRegion::from_inherited(fd, 8192).err().unwrap();
        assert!(matches!(
            err,
            SharedMemoryError::WrongSize {
                expected: 8192,
                found: 4096
            }
        ));
    }
}

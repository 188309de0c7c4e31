//! Process titles: `rgunicorn: master [app:application]` and
//! `rgunicorn: worker [app:application]`, as `ps` and `top` show them.
//!
//! Two places hold a process's name on Linux:
//! * `comm` (`ps -o comm`, `top`), set with `prctl(PR_SET_NAME)`, at most
//!   15 bytes;
//! * the command line (`ps -o args`, `/proc/PID/cmdline`), which is the
//!   memory the kernel laid out at exec: the argv strings followed,
//!   contiguously, by the environment strings. To change it we overwrite
//!   that memory in place.
//!
//! glibc calls functions in `.init_array` with `(argc, argv, envp)`, which
//! is how we learn where that memory is. The first [`set`] claims the area:
//! every argv and environment string that follows argv[0] contiguously.
//! Environment strings inside the area are first copied to the heap and
//! `environ` is pointed at the copies, so `getenv` (and Python's
//! `os.environ` in the workers) keep working. The program's own argv is
//! copied first: [`original_args`] returns it (`std::env::args` reads the
//! overwritten memory after).
//! Titles longer than the area are truncated.
//!
//! The master claims the area before forking; workers inherit the claim and
//! write their own title into their copy of the memory.

use std::ffi::OsString;
use std::ffi::{c_char, c_int, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// `argc` and `argv` as glibc passed them to the `.init_array` functions.
static ARGC: AtomicUsize = AtomicUsize::new(0);
static ARGV: AtomicPtr<*mut c_char> = AtomicPtr::new(std::ptr::null_mut());
static ENVP: AtomicPtr<*mut c_char> = AtomicPtr::new(std::ptr::null_mut());

/// The claimed area, `(start address, length)`; `None` until claimed, or
/// when there is none.
static AREA: Mutex<Option<Option<(usize, usize)>>> = Mutex::new(None);

/// The command line as the kernel passed it, copied when the area is
/// claimed (before the first title overwrites it).
static ORIGINAL_ARGS: OnceLock<Vec<OsString>> = OnceLock::new();

/// Called by glibc before `main` with the process's arguments.
extern "C" fn capture_arguments(argc: c_int, argv: *mut *mut c_char, envp: *mut *mut c_char) {
    ARGC.store(usize::try_from(argc).unwrap_or(0), Ordering::Relaxed);
    ARGV.store(argv, Ordering::Relaxed);
    ENVP.store(envp, Ordering::Relaxed);
}

/// Registers [`capture_arguments`] to run at start-up.
#[used]
#[link_section = ".init_array"]
static CAPTURE_ARGUMENTS: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) =
    capture_arguments;

extern "C" {
    /// glibc's current environment array.
    static mut environ: *mut *mut c_char;
}

/// The process's command line (argv) as it was at start, even after a
/// title has overwritten the memory `std::env::args` reads: what the app
/// sees as `sys.argv`, as gunicorn's workers see gunicorn's command line.
pub fn original_args() -> Vec<OsString> {
    match ORIGINAL_ARGS.get() {
        Some(args) => args.clone(),
        None => std::env::args_os().collect(),
    }
}

/// Sets this process's title: `comm` (truncated to 15 bytes by the kernel)
/// and the command line (truncated to the area). Best effort: a process
/// started without the usual layout keeps its command line.
pub fn set(title: &str) {
    set_comm(title);
    let Some((start, length)) = claimed_area() else {
        return;
    };
    let bytes = truncate_title(title, length);
    // SAFETY: `start..start + length` is the argv/environment string area
    // the kernel mapped for this process: writable, and no longer read as
    // arguments or environment (environment strings in it were copied out
    // and `environ` repointed when it was claimed). The copy and the fill
    // stay inside it, and leave at least one NUL at the end.
    unsafe {
        let area = start as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), area, bytes.len());
        std::ptr::write_bytes(area.add(bytes.len()), 0, length - bytes.len());
    }
}

/// `PR_SET_NAME`: the name `ps -o comm` and `top` show.
fn set_comm(title: &str) {
    let Ok(name) = CString::new(title) else {
        return;
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (the kernel copies
    // at most 16 bytes of it); `name` outlives the call.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// The title bytes that fit in an area of `length` bytes, leaving room for
/// a terminating NUL, cut at a character boundary.
pub fn truncate_title(title: &str, length: usize) -> &[u8] {
    let room = length.saturating_sub(1);
    if title.len() <= room {
        return title.as_bytes();
    }
    let mut end = room;
    while !title.is_char_boundary(end) {
        end -= 1;
    }
    &title.as_bytes()[..end]
}

/// The longest run of strings, each starting where the previous one's NUL
/// ended, from the first: `(start, length)` of `strings` given as
/// `(address, length including the NUL)`.
pub fn contiguous_span(strings: &[(usize, usize)]) -> Option<(usize, usize)> {
    let (start, first_length) = *strings.first()?;
    let mut end = start + first_length;
    for (address, length) in &strings[1..] {
        if *address != end {
            break;
        }
        end += length;
    }
    Some((start, end - start))
}

/// Claims the area on first use (see the module comment).
fn claimed_area() -> Option<(usize, usize)> {
    let mut area = AREA.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *area.get_or_insert_with(claim_area)
}

fn claim_area() -> Option<(usize, usize)> {
    let argc = ARGC.load(Ordering::Relaxed);
    let argv = ARGV.load(Ordering::Relaxed);
    let envp = ENVP.load(Ordering::Relaxed);
    if argc == 0 || argv.is_null() {
        return None;
    }
    let mut arguments = Vec::with_capacity(argc);
    // SAFETY: as below: `argc` valid pointers to NUL-terminated strings,
    // not yet overwritten (this runs once, under the AREA lock, before the
    // first title is written).
    unsafe {
        for index in 0..argc {
            let argument = *argv.add(index);
            if argument.is_null() {
                break;
            }
            arguments
                .push(std::ffi::OsStr::from_bytes(CStr::from_ptr(argument).to_bytes()).to_owned());
        }
    }
    let _ = ORIGINAL_ARGS.set(arguments);
    let mut strings = Vec::new();
    // SAFETY: glibc passed `argv` with `argc` valid pointers to
    // NUL-terminated strings (then a null), and `envp` as a null-terminated
    // array of such strings; both live for the whole process. Nothing has
    // written to those strings yet (this runs once, under the AREA lock).
    unsafe {
        for index in 0..argc {
            push_string(&mut strings, *argv.add(index))?;
        }
        if !envp.is_null() {
            let mut entry = envp;
            while !(*entry).is_null() {
                push_string(&mut strings, *entry)?;
                entry = entry.add(1);
            }
        }
    }
    let (start, length) = contiguous_span(&strings)?;
    // SAFETY: single-threaded start-up of the master (the only caller
    // before any fork), so no one reads `environ` concurrently.
    unsafe { move_environment_out_of(start, start + length) };
    Some((start, length))
}

/// Adds one string's `(address, length with NUL)`.
///
/// # Safety
/// `string` is null or points to a NUL-terminated string.
unsafe fn push_string(strings: &mut Vec<(usize, usize)>, string: *mut c_char) -> Option<()> {
    if string.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    let length = unsafe { CStr::from_ptr(string) }.to_bytes_with_nul().len();
    strings.push((string as usize, length));
    Some(())
}

/// Repoints every `environ` entry that lies in `start..end` at a heap copy
/// (leaked: the environment lives as long as the process).
///
/// # Safety
/// No other thread may read or change the environment meanwhile.
unsafe fn move_environment_out_of(start: usize, end: usize) {
    // SAFETY: reading the `environ` pointer; the caller excludes
    // concurrent changes.
    let mut entry = unsafe { environ };
    if entry.is_null() {
        return;
    }
    // SAFETY: `environ` is a null-terminated array of NUL-terminated
    // strings; each entry is replaced by a pointer to an identical string.
    unsafe {
        while !(*entry).is_null() {
            let address = *entry as usize;
            if (start..end).contains(&address) {
                let copy = CStr::from_ptr(*entry).to_owned();
                *entry = copy.into_raw();
            }
            entry = entry.add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_truncated_to_the_area_leaving_a_nul() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "rgunicorn: master [app:app]",
                100,
                "rgunicorn: master [app:app]",
            ),
            (
                "rgunicorn: master [app:app]",
                28,
                "rgunicorn: master [app:app]",
            ),
            (
                "rgunicorn: master [app:app]",
                27,
                "rgunicorn: master [app:app",
            ),
            ("rgunicorn: master [app:app]", 10, "rgunicorn"),
            ("abc", 1, ""),
            ("abc", 0, ""),
            ("héllo", 3, "h"),
        ];
        for (title, length, expected) in cases {
            assert_eq!(
                truncate_title(title, *length),
                expected.as_bytes(),
                "{title} in {length}"
            );
        }
    }

    #[test]
    fn the_span_covers_strings_that_follow_each_other() {
        assert_eq!(contiguous_span(&[]), None);
        assert_eq!(contiguous_span(&[(100, 10)]), Some((100, 10)));
        assert_eq!(
            contiguous_span(&[(100, 10), (110, 5), (115, 20)]),
            Some((100, 35))
        );
        // A gap ends the span: only what is known to be ours is used.
        assert_eq!(
            contiguous_span(&[(100, 10), (110, 5), (200, 20), (220, 1)]),
            Some((100, 15))
        );
    }

    #[test]
    fn arguments_were_captured_before_main() {
        assert!(ARGC.load(Ordering::Relaxed) >= 1);
        assert!(!ARGV.load(Ordering::Relaxed).is_null());
    }
}

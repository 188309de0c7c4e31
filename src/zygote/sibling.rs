//! The worker's fork as the master's own child: one
//! `clone3(CLONE_PARENT)` from the single-threaded zygote, made to leave
//! the child's thread as glibc's `fork()` leaves it (its cached tid and its
//! robust-futex list). One page-table copy, no intermediate process and no
//! wait for the master to adopt the worker.
//!
//! It is only tried when the zygote has one thread; otherwise (or when the
//! kernel refuses) the caller falls back to glibc's `fork()` twice
//! (`fork.rs`), which takes glibc's and the app's libraries' at-fork locks.

use std::io;

/// Which side of the clone this process is on.
pub(super) enum Cloned {
    /// The zygote; the worker's pid.
    Parent(i32),
    /// The worker, whose parent is the master.
    Child,
}

/// Why the direct clone was not made (the caller then forks twice).
#[derive(Debug, thiserror::Error)]
pub(super) enum SiblingError {
    #[error("the zygote runs {0} threads")]
    Threads(usize),
    #[error("cannot count the zygote's threads: {0}")]
    CountThreads(io::Error),
    #[error("cannot read the thread's tid address: {0}")]
    TidAddress(io::Error),
    #[error("the thread's tid address does not hold its tid")]
    TidMismatch,
    #[error("cannot read the thread's robust-futex list: {0}")]
    RobustList(io::Error),
    #[error("clone3 failed: {0}")]
    Clone(io::Error),
}

/// Where glibc keeps the calling thread's own facts the kernel knows of.
struct ThreadFacts {
    /// glibc's cached tid of this thread (`struct pthread`'s `tid`): the
    /// address glibc gave `set_tid_address` at start, which its `fork()`
    /// passes as `CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID`.
    tid_address: *mut libc::pid_t,
    /// The robust-futex list head glibc registered for this thread (the
    /// kernel does not carry it over a clone; glibc's `fork()` registers
    /// it again in the child).
    robust_head: *mut libc::c_void,
    robust_len: libc::size_t,
}

/// Clones the calling process into a new child of the master (its parent
/// is the zygote's parent). The caller holds the GIL between
/// `PyOS_BeforeFork` and the after-fork call of its side, and must not
/// return into the zygote's loop on the child's side.
pub(super) fn clone_as_sibling() -> Result<Cloned, SiblingError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(SiblingError::CountThreads)?
        .count();
    if threads != 1 {
        return Err(SiblingError::Threads(threads));
    }
    let facts = thread_facts()?;
    // SAFETY: clone_args is plain integers; all-zero is its "no option".
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags =
        (libc::CLONE_PARENT | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;
    args.child_tid = facts.tid_address as u64;
    // exit_signal stays 0: clone3 refuses one with CLONE_PARENT, and the
    // child gets the zygote's own (SIGCHLD, to the master).
    // SAFETY: a fork without CLONE_VM (the child runs on a copy of this
    // stack, as after fork(2)). What glibc's fork() does besides the
    // syscall, and why skipping it is sound here:
    // - locks (malloc arenas, stdio list, the loader's locks, the at-fork
    //   handlers' locks of other libraries) are taken so that no *other*
    //   thread holds them at the copy. This process has one thread (counted
    //   above; only this thread could start another before the clone), and
    //   it is in none of those functions now.
    // - the child's cached tid (`struct pthread`'s `tid`, read by
    //   pthread_kill, recursive/error-checking mutexes' owner field): the
    //   kernel writes it (CLONE_CHILD_SETTID at the same address glibc's
    //   fork passes, checked in `thread_facts`), and clears it at exit
    //   (CLONE_CHILD_CLEARTID), exactly as for glibc's fork. pthread_self()
    //   is the TCB's address, the same in the copy; getpid/gettid are
    //   system calls (glibc >= 2.25 caches no pid); Rust's thread::current()
    //   and stdout's reentrant lock use a per-thread counter in TLS, copied
    //   with the memory.
    // - the robust-futex list, which the kernel drops: registered again in
    //   the child below, at the same address (CPython takes no robust
    //   mutex, so the copied list is empty).
    // - pthread_atfork handlers of C libraries are not run. CPython's
    //   (`os.register_at_fork`, the import lock, the GIL's state) run in
    //   PyOS_BeforeFork/PyOS_AfterFork_Child, which the caller makes.
    //   Libraries whose at-fork work matters (OpenBLAS's pool, jemalloc's
    //   background thread, gRPC) run threads, and a zygote with threads
    //   forks with glibc's fork() instead (docs/preload.md).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match pid {
        -1 => Err(SiblingError::Clone(io::Error::last_os_error())),
        0 => {
            // SAFETY: registers the head glibc set up for this thread (the
            // memory is this process's copy of it); set_robust_list reads
            // nothing else.
            unsafe {
                libc::syscall(
                    libc::SYS_set_robust_list,
                    facts.robust_head,
                    facts.robust_len,
                );
            }
            Ok(Cloned::Child)
        }
        pid => Ok(Cloned::Parent(pid as i32)),
    }
}

/// The calling thread's tid address (checked to hold its tid) and its
/// robust-futex list head, as the kernel knows them.
fn thread_facts() -> Result<ThreadFacts, SiblingError> {
    let mut tid_address: *mut libc::pid_t = std::ptr::null_mut();
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer to the address given,
    // which is a live local of that type.
    let done = unsafe {
        libc::prctl(
            libc::PR_GET_TID_ADDRESS,
            &mut tid_address as *mut *mut libc::pid_t,
        )
    };
    if done != 0 {
        return Err(SiblingError::TidAddress(io::Error::last_os_error()));
    }
    if tid_address.is_null() {
        return Err(SiblingError::TidMismatch);
    }
    // SAFETY: the address is the one the kernel clears when this thread
    // ends, set by glibc at start to its own (live, static for the main
    // thread) TCB field; a volatile read of an aligned pid_t.
    let cached = unsafe { std::ptr::read_volatile(tid_address) };
    // SAFETY: gettid has no preconditions and cannot fail.
    if cached != unsafe { libc::gettid() } {
        return Err(SiblingError::TidMismatch);
    }
    let mut robust_head: *mut libc::c_void = std::ptr::null_mut();
    let mut robust_len: libc::size_t = 0;
    // SAFETY: get_robust_list(0, ..) writes one pointer and one size to the
    // two live locals given.
    let done = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut robust_head as *mut *mut libc::c_void,
            &mut robust_len as *mut libc::size_t,
        )
    };
    if done != 0 {
        return Err(SiblingError::RobustList(io::Error::last_os_error()));
    }
    Ok(ThreadFacts {
        tid_address,
        robust_head,
        robust_len,
    })
}

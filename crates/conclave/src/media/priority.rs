//! The media workers' CPU priority.
//!
//! A media worker is one thread that reads, forwards and sends every packet
//! of its meetings, so a packet that arrives while that thread waits for a
//! CPU waits with it. On a busy two-core host the worker waited for a CPU
//! about as long as it ran, and that wait was nearly all of the p99 delay
//! (docs/benchmarks.md, "Where the tail comes from at 6 × 14"). Each worker
//! therefore asks for a lower nice value than the rest of the process: the
//! scheduler then lets it preempt ordinary work when a packet wakes it,
//! while it still cannot starve anything (it sleeps between packets, and a
//! nice value is a weight, not a real-time class).
//!
//! On Linux the nice value belongs to a thread (setpriority(2) with
//! `PRIO_PROCESS` and a thread id), so password hashing and the HTTP
//! runtime keep the process's. Lowering it needs `CAP_SYS_NICE` or an
//! `RLIMIT_NICE` that allows it (systemd: `AmbientCapabilities=CAP_SYS_NICE`
//! or `LimitNICE=`); without either the worker keeps the process's priority,
//! which is what it had before this module.

/// What a worker asks for unless configured otherwise (`media_nice`): well
/// above ordinary work (nice 0 has a ninth of nice -10's weight), short of
/// what audio servers keep for themselves (-11 and below).
pub const DEFAULT_NICE: i32 = -10;

/// Gives the calling thread, media worker `worker`, the nice value `nice`;
/// 0 leaves it alone. A refusal is logged once (by worker 0) and changes
/// nothing else: the worker runs as it would have.
pub(crate) fn apply(worker: usize, nice: i32) {
    if nice == 0 {
        return;
    }
    match set_own_nice(nice) {
        Ok(()) => tracing::debug!(worker, nice, "media worker priority set"),
        Err(e) if worker == 0 => tracing::info!(
            nice,
            error = %e,
            "media workers keep the process's priority: a lower nice value needs \
             CAP_SYS_NICE or RLIMIT_NICE (docs/operations.md, Shutdown and systemd)"
        ),
        Err(e) => tracing::debug!(worker, nice, error = %e, "media worker priority not set"),
    }
}

/// The calling thread's own nice value, set.
#[cfg(target_os = "linux")]
fn set_own_nice(nice: i32) -> std::io::Result<()> {
    let me = rustix::thread::gettid();
    rustix::process::setpriority_process(Some(me), nice).map_err(Into::into)
}

/// Elsewhere the nice value is the whole process's: not changed.
#[cfg(not(target_os = "linux"))]
fn set_own_nice(_nice: i32) -> std::io::Result<()> {
    Err(std::io::Error::other("per-thread nice values are Linux's"))
}

/// The calling thread's nice value.
#[cfg(all(test, target_os = "linux"))]
fn own_nice() -> std::io::Result<i32> {
    let me = rustix::thread::gettid();
    rustix::process::getpriority_process(Some(me)).map_err(Into::into)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Raising a nice value is always allowed, so this holds for any user:
    /// the worker's thread gets the value, and the thread that started it
    /// (the rest of the process) keeps its own.
    #[test]
    fn a_worker_sets_its_own_nice_value_and_not_the_process_s() {
        let before = own_nice().expect("read own nice value");
        let target = (before + 3).min(19);
        let seen = std::thread::spawn(move || {
            apply(0, target);
            own_nice().expect("read worker's nice value")
        })
        .join()
        .expect("worker thread");
        assert_eq!(seen, target);
        assert_eq!(own_nice().expect("read own nice value"), before);
    }

    /// 0 means "leave it": a thread that already runs at another value
    /// keeps it.
    #[test]
    fn zero_leaves_the_thread_alone() {
        let seen = std::thread::spawn(|| {
            let start = own_nice().expect("read nice value");
            let raised = (start + 2).min(19);
            set_own_nice(raised).expect("raising is allowed");
            apply(1, 0);
            (raised, own_nice().expect("read nice value"))
        })
        .join()
        .expect("thread");
        assert_eq!(seen.0, seen.1);
    }
}

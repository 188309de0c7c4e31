//! The worker's mio event loop: accepts on the shared listening sockets,
//! drives each connection's state machine, handles signals and timers.

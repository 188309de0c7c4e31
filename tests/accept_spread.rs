//! Accepting spreads across workers: the listening sockets are registered
//! with EPOLLEXCLUSIVE, so the kernel wakes one worker that is waiting, and a
//! worker busy in the application is passed over rather than taking every
//! connection while its siblings idle.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use support::ServerBuilder;

#[test]
fn connections_spread_across_workers_when_one_is_busy() {
    let server = Arc::new(
        ServerBuilder::new("hello_master:application")
            .workers(2)
            .start(),
    );
    let served_by: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let server = Arc::clone(&server);
            let served_by = Arc::clone(&served_by);
            std::thread::spawn(move || {
                for _ in 0..6 {
                    // Each request keeps its worker busy in the app for 50 ms.
                    let response = server.request(
                        b"GET /sleep?0.05 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    );
                    assert_eq!(response.status, 200);
                    *served_by
                        .lock()
                        .unwrap()
                        .entry(response.text())
                        .or_default() += 1;
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let counts = served_by.lock().unwrap().clone();
    let total: usize = counts.values().sum();
    assert_eq!(total, 24);
    assert_eq!(counts.len(), 2, "one worker served everything: {counts:?}");
    assert!(
        counts.values().all(|&n| n >= 6),
        "connections bunched on one worker: {counts:?}"
    );
}

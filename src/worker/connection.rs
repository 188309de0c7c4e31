//! One client connection's state machine: reading the head, reading the
//! body, running the app, writing the response, then keep-alive or close.

//! The `rgunicorn` command: parse settings, run the master, turn errors into
//! one-line messages and exit codes.

fn main() {
    todo!()
}

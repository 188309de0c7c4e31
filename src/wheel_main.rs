//! `rgunicorn-bin`, the program of the Python wheel (built with
//! `--features wheel`, see `pyproject.toml`): the `rgunicorn` command of
//! `src/main.rs` under another name, because the wheel's `rgunicorn` is the
//! launcher (`python/rgunicorn/launcher.py`) that finds the libpython this
//! program needs and execs it.

#[path = "main.rs"]
mod command;

fn main() {
    command::main()
}

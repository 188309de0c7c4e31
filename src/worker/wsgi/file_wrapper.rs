//! `wsgi.file_wrapper`: wraps a file-like object so the event loop can send a
//! real file with sendfile, or iterate it in blocks otherwise.
//!
//! `FileWrapper` is the type placed in the environ; apps call it as
//! `environ['wsgi.file_wrapper'](filelike, blksize)`. Iterating it reads
//! `blksize` bytes at a time; the connection may instead ask for
//! [`FileWrapper::sendfile_source`] and send the file itself.

use pyo3::prelude::*;
use std::os::fd::RawFd;

/// The block size used when the app gives none (PEP 3333's example value).
const DEFAULT_BLOCK_SIZE: usize = 8192;

/// The object the app returns to ask for a file to be sent.
#[pyclass(module = "rgunicorn")]
pub struct FileWrapper {
    /// The wrapped file-like object.
    #[pyo3(get)]
    filelike: Py<PyAny>,
    /// Bytes per `read()` when iterated.
    #[pyo3(get)]
    blksize: usize,
}

impl FileWrapper {
    /// The file descriptor and current offset to sendfile from, when the
    /// wrapped object is a real file (has a working `fileno()`).
    ///
    /// Only regular files qualify (a pipe or socket has no offset to send
    /// from). The offset is the object's `tell()` when it has one — for a
    /// buffered Python file that is the logical position, which read-ahead
    /// can leave behind the descriptor's — else the descriptor's own offset.
    pub fn sendfile_source(&self, py: Python<'_>) -> Option<(RawFd, u64)> {
        let filelike = self.filelike.bind(py);
        let fd = filelike
            .call_method0("fileno")
            .ok()?
            .extract::<RawFd>()
            .ok()?;
        regular_file_size(fd)?;
        let offset = match filelike.call_method0("tell") {
            Ok(position) => position.extract::<u64>().ok()?,
            Err(_) => descriptor_offset(fd)?,
        };
        Some((fd, offset))
    }

    /// The block size the app asked for.
    pub fn block_size(&self) -> usize {
        self.blksize
    }
}

/// The size of the regular file behind `fd`, or `None` when `fd` is not an
/// open descriptor of a regular file (a pipe or socket has no size to send).
pub fn regular_file_size(fd: RawFd) -> Option<u64> {
    // SAFETY: libc::stat is plain data; all-zero is a valid value.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes into `stat`; an invalid fd yields -1.
    let ok = unsafe { libc::fstat(fd, &mut stat) } == 0;
    let regular = ok && (stat.st_mode & libc::S_IFMT) == libc::S_IFREG;
    regular.then(|| u64::try_from(stat.st_size).unwrap_or(0))
}

/// `lseek(fd, 0, SEEK_CUR)`, when it succeeds.
fn descriptor_offset(fd: RawFd) -> Option<u64> {
    // SAFETY: a zero-distance SEEK_CUR only reports the offset; an invalid
    // fd yields -1.
    let offset = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    u64::try_from(offset).ok()
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = DEFAULT_BLOCK_SIZE))]
    fn py_new(filelike: Py<PyAny>, blksize: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next block from `filelike.read(blksize)`; stops at an empty read.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok(block.is_truthy()?.then_some(block))
    }

    /// Closes the wrapped object, if it can be closed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::PyBytes;
    use std::io::Write;

    /// The bytes of one block.
    fn block_bytes<'a>(block: &'a Bound<'_, PyAny>) -> Option<&'a [u8]> {
        block.cast::<PyBytes>().ok().map(|b| b.as_bytes())
    }

    fn temp_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("rgunicorn-fw-{name}-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(contents)
            .unwrap();
        path
    }

    fn globals_with_wrapper(py: Python<'_>) -> Bound<'_, pyo3::types::PyDict> {
        let globals = pyo3::types::PyDict::new(py);
        globals
            .set_item("FileWrapper", py.get_type::<FileWrapper>())
            .unwrap();
        globals.set_item("io", py.import("io").unwrap()).unwrap();
        globals
    }

    #[test]
    fn iterates_in_blocks_and_closes_the_filelike() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let globals = globals_with_wrapper(py);
            let code = c"buf = io.BytesIO(b'abcdefgh'); fw = FileWrapper(buf, 3)";
            py.run(code, Some(&globals), None).unwrap();
            let fw = globals.get_item("fw").unwrap().unwrap();
            let blocks: Vec<Vec<u8>> = fw
                .try_iter()
                .unwrap()
                .map(|b| b.unwrap().extract().unwrap())
                .collect();
            assert_eq!(
                blocks,
                vec![b"abc".to_vec(), b"def".to_vec(), b"gh".to_vec()]
            );
            fw.call_method0("close").unwrap();
            let closed = py.eval(c"buf.closed", Some(&globals), None).unwrap();
            assert!(closed.is_truthy().unwrap());
            // A BytesIO has no working fileno(): no sendfile.
            let fw = fw.cast::<FileWrapper>().unwrap();
            assert_eq!(fw.borrow().sendfile_source(py), None);
            assert_eq!(fw.borrow().block_size(), 3);
        });
    }

    #[test]
    fn close_is_optional_on_the_filelike() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let globals = globals_with_wrapper(py);
            let code = c"class Empty:\n    def read(self, n):\n        return b''\nfw = FileWrapper(Empty())";
            py.run(code, Some(&globals), None).unwrap();
            let fw = globals.get_item("fw").unwrap().unwrap();
            assert_eq!(fw.try_iter().unwrap().count(), 0);
            fw.call_method0("close").unwrap();
        });
    }

    #[test]
    fn real_file_gives_fd_and_logical_offset() {
        super::super::test_support::python();
        let path = temp_file("real", &[b'x'; 20000]);
        super::super::test_support::attach(|py| {
            let globals = globals_with_wrapper(py);
            globals.set_item("path", path.to_str().unwrap()).unwrap();
            let code = c"f = open(path, 'rb'); f.read(10); fw = FileWrapper(f)";
            py.run(code, Some(&globals), None).unwrap();
            let fw = globals.get_item("fw").unwrap().unwrap();
            let fw = fw.cast::<FileWrapper>().unwrap();
            let expected_fd: RawFd = py
                .eval(c"f.fileno()", Some(&globals), None)
                .unwrap()
                .extract()
                .unwrap();
            assert_eq!(fw.borrow().sendfile_source(py), Some((expected_fd, 10)));
            assert_eq!(fw.borrow().block_size(), DEFAULT_BLOCK_SIZE);
            let first = fw.call_method0("__next__").unwrap();
            assert_eq!(block_bytes(&first).unwrap().len(), DEFAULT_BLOCK_SIZE);
            fw.call_method0("close").unwrap();
            assert_eq!(fw.borrow().sendfile_source(py), None);
        });
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn pipe_is_not_a_sendfile_source() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let globals = globals_with_wrapper(py);
            let code = c"import os\nr, w = os.pipe()\nf = os.fdopen(r, 'rb')\nfw = FileWrapper(f)";
            py.run(code, Some(&globals), None).unwrap();
            let fw = globals.get_item("fw").unwrap().unwrap();
            let fw = fw.cast::<FileWrapper>().unwrap();
            assert_eq!(fw.borrow().sendfile_source(py), None);
            py.run(c"f.close(); os.close(w)", Some(&globals), None)
                .unwrap();
        });
    }
}

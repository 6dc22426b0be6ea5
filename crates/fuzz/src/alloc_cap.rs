//! A global allocator that refuses any single allocation above a cap, so a decoder that
//! trusts a length field fails the fuzz run instead of passing on a machine with memory to
//! spare. Install it in a binary or test with `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation a decoder may make (the biggest legitimate buffers are a
/// 64 KiB frame or a few MiB of JSON; 64 MiB is far above both).
pub const CAP: usize = 64 << 20;

/// How many allocations above [`CAP`] were refused since the start.
static REFUSED: AtomicUsize = AtomicUsize::new(0);
/// The size of the last refused allocation.
static LAST_REFUSED: AtomicUsize = AtomicUsize::new(0);

/// The input being run (set by the driver), saved to the file given to [`set_oom_file`]
/// when an allocation is refused: the process aborts right after, so this is the only
/// chance to keep it.
static CURRENT_PTR: AtomicUsize = AtomicUsize::new(0);
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Where the input that made an allocation over the cap is saved; unset, it is not saved
/// (a test must not write into the source tree).
static OOM_FILE: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// The file name [`set_oom_file`] is usually given, in a crash directory.
pub const OOM_FILE_NAME: &str = "oom-input.bin";

/// Saves the input of a refused allocation to `path` from now on (the first call wins;
/// a path with a NUL byte is ignored).
pub fn set_oom_file(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
        let _ = OOM_FILE.set(c);
    }
}

/// Tells the allocator which input runs now (the slice must outlive the run).
pub fn set_current(input: &[u8]) {
    CURRENT_PTR.store(input.as_ptr() as usize, Ordering::SeqCst);
    CURRENT_LEN.store(input.len(), Ordering::SeqCst);
}

/// No input runs any more (the last one may be freed).
pub fn clear_current() {
    CURRENT_PTR.store(0, Ordering::SeqCst);
    CURRENT_LEN.store(0, Ordering::SeqCst);
}

/// The system allocator with a per-allocation cap.
#[derive(Debug)]
pub struct CappedAlloc;

impl CappedAlloc {
    fn refuse(size: usize) {
        REFUSED.fetch_add(1, Ordering::SeqCst);
        LAST_REFUSED.store(size, Ordering::SeqCst);
        // No allocation here: write a fixed message with the size in hex.
        let mut buf =
            *b"weft-fuzz: refused an allocation of 0x0000000000000000 bytes (over the cap)\n";
        let digits = b"0123456789abcdef";
        for i in 0..16 {
            buf[38 + i] = digits[(size >> ((15 - i) * 4)) & 0xf];
        }
        // SAFETY: writing a valid buffer to stderr.
        unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        let (ptr, len) = (
            CURRENT_PTR.load(Ordering::SeqCst),
            CURRENT_LEN.load(Ordering::SeqCst),
        );
        if let (true, Some(file)) = (ptr != 0, OOM_FILE.get()) {
            // SAFETY: open/write/close with valid arguments; the driver keeps the input
            // alive while it runs.
            unsafe {
                let fd = libc::open(
                    file.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                    0o644,
                );
                if fd >= 0 {
                    libc::write(fd, ptr as *const libc::c_void, len);
                    libc::close(fd);
                }
            }
        }
    }
}

// SAFETY: forwards to the system allocator, or returns null (allowed by the contract).
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CAP {
            Self::refuse(layout.size());
            return std::ptr::null_mut();
        }
        // SAFETY: same layout as given to us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CAP {
            Self::refuse(layout.size());
            return std::ptr::null_mut();
        }
        // SAFETY: same layout as given to us.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > CAP {
            Self::refuse(new_size);
            return std::ptr::null_mut();
        }
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// How many allocations over the cap were refused so far (a refusal aborts the process
/// through `handle_alloc_error` unless the code used `try_reserve`).
pub fn refused() -> usize {
    REFUSED.load(Ordering::SeqCst)
}

//! What the fuzz targets share: the decode limits they run under.

use mqimg::frame::decode::{Backend, Limits};

/// Decode limits for fuzzing, below the daemon's defaults (8192x8192, 40 MP) so that a header that
/// legitimately passes them cannot push a run past libFuzzer's 256 MB RSS / allocation limits:
/// 2^23 pixels (8.4 MP, e.g. 4096x2048) is a 24 MiB RGB8 buffer, and 64 MiB for the widest layout a
/// decoder hands back (RGBA, 16 bits per channel), plus the RGB8 copy and the oriented copy.
/// Anything the fuzzer finds over 256 MB under these limits is therefore a bug in how limits are
/// enforced, not a large-but-legal image.
pub const LIMITS: Limits = Limits {
    max_width: 4096,
    max_height: 4096,
    max_pixels: 1 << 23,
    apply_orientation: true,
    verify_entropy: true,
    backend: Backend::Zune,
};

/// Largest payload `frame` accepts (`decode.max_payload_bytes`); libFuzzer's `-max_len` keeps inputs
/// far below it, so the limit check itself is covered by the unit tests, not here.
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;

/// Whether `text` is one line: the error messages and warnings promise that.
pub fn one_line(text: &str) -> bool {
    !text.contains(['\n', '\r'])
}

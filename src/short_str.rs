//! `ShortStr`: an immutable string that holds up to 22 bytes in place, for job names.
//!
//! Almost every job name is short (`Job<id>`, or a name a host gives such as `build-42`).
//! Held in place it costs no allocation when the job is made and no free when it goes,
//! and the default name can be made at once instead of on first use (where it needed a
//! `OnceLock` beside the string). It is the record payload's small buffer (`Bytes`) with
//! the promise that the bytes are UTF-8.

use crate::record::Bytes;
use std::fmt;

/// A string of up to 22 bytes held in place, longer ones on the heap. Dereferences to
/// `str`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ShortStr(Bytes);

impl ShortStr {
    /// `Job<id>`, PowerShell's default job name, formatted in place. By hand: `write!`
    /// cost ~370 instructions per job (W1), this ~40.
    pub(crate) fn default_name(id: u64) -> ShortStr {
        let mut digits = [0u8; 20]; // u64::MAX has 20
        let mut at = digits.len();
        let mut n = id;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let digits = &digits[at..];
        let mut name = [0u8; 23];
        name[..3].copy_from_slice(b"Job");
        name[3..3 + digits.len()].copy_from_slice(digits);
        // At most 22 bytes stay in place; an id of 20 digits goes to the heap.
        ShortStr(Bytes::from(&name[..3 + digits.len()]))
    }
}

impl From<String> for ShortStr {
    fn from(s: String) -> ShortStr {
        ShortStr(Bytes::from(s.into_bytes()))
    }
}

impl std::ops::Deref for ShortStr {
    type Target = str;

    fn deref(&self) -> &str {
        // SAFETY: every constructor takes the bytes of a `str` (a `String`, or what `write!`
        // formatted from one), and nothing changes them afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::ShortStr;

    #[test]
    fn default_names_and_given_names_read_back() {
        assert_eq!(&*ShortStr::default_name(1), "Job1");
        assert_eq!(&*ShortStr::default_name(123_456_789), "Job123456789");
        assert_eq!(
            &*ShortStr::default_name(u64::MAX),
            format!("Job{}", u64::MAX)
        );
        for s in [
            "",
            "é",
            "build-42",
            "a name longer than twenty-two bytes, ünïcode",
        ] {
            assert_eq!(&*ShortStr::from(s.to_string()), s);
        }
    }
}

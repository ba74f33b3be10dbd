//! Little-endian byte writer and bounds-checked reader for record payloads.
//!
//! Every payload of the log is built with [`Put`] and read back with [`Take`]. The reader never
//! panics: each read checks the remaining length and returns [`Truncated`] instead, so a record
//! decoder fed hostile bytes fails cleanly (the fuzz targets rely on this).

/// A decode ran past the end of its input, or met a value it cannot accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated {
    /// Byte offset within the payload where decoding stopped.
    pub offset: usize,
    /// What was being read.
    pub what: &'static str,
}

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "payload is malformed at byte {} while reading {}", self.offset, self.what)
    }
}

impl std::error::Error for Truncated {}

/// Appends little-endian values to a byte vector.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_i64(&mut self, v: i64);
    /// A `u32` length followed by the bytes.
    fn put_bytes(&mut self, v: &[u8]);
    fn put_str(&mut self, v: &str) {
        self.put_bytes(v.as_bytes());
    }
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_bytes(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("encoded field longer than 4 GiB");
        self.put_u32(len);
        self.extend_from_slice(v);
    }
}

/// Reads little-endian values from a byte slice, never past its end.
pub(crate) struct Take<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Take<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Take { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn err(&self, what: &'static str) -> Truncated {
        Truncated { offset: self.pos, what }
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Truncated> {
        let end = self.pos.checked_add(N).ok_or_else(|| self.err(what))?;
        let slice = self.bytes.get(self.pos..end).ok_or_else(|| self.err(what))?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, Truncated> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, Truncated> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn slice(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], Truncated> {
        let end = self.pos.checked_add(len).ok_or_else(|| self.err(what))?;
        let slice = self.bytes.get(self.pos..end).ok_or_else(|| self.err(what))?;
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], Truncated> {
        let len = self.u32(what)? as usize;
        self.slice(len, what)
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, Truncated> {
        let start = self.pos;
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Truncated { offset: start, what })
    }

    /// A `u32` element count, checked against the bytes left so a hostile count cannot make
    /// the decoder allocate more than the input could describe.
    pub(crate) fn count(&mut self, min_elem_bytes: usize, what: &'static str) -> Result<usize, Truncated> {
        let start = self.pos;
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_elem_bytes.max(1)) > self.remaining() {
            return Err(Truncated { offset: start, what });
        }
        Ok(n)
    }

    pub(crate) fn finish(self, what: &'static str) -> Result<(), Truncated> {
        if self.pos == self.bytes.len() { Ok(()) } else { Err(self.err(what)) }
    }
}

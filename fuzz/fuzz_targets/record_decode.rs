//! Frame headers and record payloads from arbitrary bytes: decoding never panics, and what
//! decodes re-encodes to the same bytes (the encodings are canonical).
//!
//! Input: any bytes. The first 32 are tried as a frame header; the whole input is decoded as
//! the payload of every kind byte (0..=255, known kinds and unknown ones); and the input is
//! framed with `encode_frame` and read back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postlog_engine::format::{Codec, FrameError, FrameHeader, RECORD_HEADER_LEN, crc32c, encode_frame, frame_len};
use postlog_engine::record::{Record, kind};

fuzz_target!(|data: &[u8]| {
    // A frame header: what decodes re-encodes byte for byte.
    if let Some(h) = data.get(..RECORD_HEADER_LEN) {
        let mut hb = [0u8; RECORD_HEADER_LEN];
        hb.copy_from_slice(h);
        match FrameHeader::decode(&hb) {
            Ok(f) => assert_eq!(f.encode(), hb, "frame header does not re-encode: {f:?}"),
            Err(FrameError::Zero) => assert!(hb.iter().all(|&b| b == 0)),
            Err(_) => {}
        }
    }

    // A payload of every kind.
    for k in 0..=u8::MAX {
        let Ok((rec, end)) = Record::decode(k, data) else { continue };
        assert_eq!(rec.kind(), k, "{rec:?} decoded for kind {k}");
        assert!(end <= data.len());
        let mut again = Vec::new();
        rec.encode_payload(&mut again);
        match k {
            // Only the fixed prefix belongs to the record; the data follows it.
            kind::BLOB | kind::META => assert_eq!(again, &data[..end], "{rec:?}"),
            _ => {
                assert_eq!(end, data.len(), "{rec:?}: decode stopped early");
                assert_eq!(again, data, "{rec:?} does not re-encode to its payload");
            }
        }
        let (back, back_end) = Record::decode(k, &again).expect("a re-encoded record decodes");
        assert_eq!(back, rec);
        assert_eq!(back_end, again.len());
    }

    // The input as the payload of a frame: the header reads back what was written.
    let k = data.first().copied().unwrap_or(0);
    let lsn = data.len() as u64 * 7919;
    let account = u32::from(data.get(1).copied().unwrap_or(0));
    let mut buf = Vec::new();
    let split = data.len() / 2;
    encode_frame(&mut buf, k, Codec::Zstd, lsn, account, &[&data[..split], &data[split..]]);
    assert_eq!(buf.len(), frame_len(data.len()));
    let mut hb = [0u8; RECORD_HEADER_LEN];
    hb.copy_from_slice(&buf[..RECORD_HEADER_LEN]);
    let f = FrameHeader::decode(&hb).expect("an encoded frame header decodes");
    assert_eq!((f.kind, f.codec, f.lsn, f.account), (k, Codec::Zstd as u8, lsn, account));
    assert_eq!(f.payload_len as usize, data.len());
    assert_eq!(f.payload_crc, crc32c(data));
    assert_eq!(&buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + data.len()], data);
    assert!(buf[RECORD_HEADER_LEN + data.len()..].iter().all(|&b| b == 0), "padding is zero");
});

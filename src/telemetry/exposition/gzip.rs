//! One gzip member assembled per scrape from segments compressed once.
//!
//! The cached body is compressed once per render into a raw DEFLATE segment that ends with a sync
//! flush and no final block; the per-scrape process metrics get their own segment. A scrape then
//! sends the gzip header, the segments, an empty final block and the trailer (CRC-32 combined from
//! the segments' CRCs, length modulo 2³²): one standard gzip member (RFC 1952), which every
//! client decodes (curl and browsers read only the first member of a multi-member file), at the
//! cost of a few bytes of framing instead of a compression per scrape.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

/// Plain bytes and their compressed segment.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    pub plain: Bytes,
    /// Raw DEFLATE, sync-flushed, no final block: segments concatenate.
    pub deflate: Bytes,
    pub crc: u32,
}

impl Encoded {
    pub fn new(plain: Vec<u8>) -> Encoded {
        let deflate = segment(&plain);
        let mut h = crc32fast::Hasher::new();
        h.update(&plain);
        Encoded {
            crc: h.finalize(),
            deflate: Bytes::from(deflate),
            plain: Bytes::from(plain),
        }
    }
}

/// Gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// An empty final block with fixed Huffman codes (BFINAL=1, BTYPE=01, end-of-block), padded.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// Compresses `plain` into a raw DEFLATE segment ending on a byte boundary with no final block.
fn segment(plain: &[u8]) -> Vec<u8> {
    // Level 1: text metrics compress ~10x even at the fastest level, and the render stays cheap.
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(plain.len() / 8 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        // A stream error would be a bug in flate2 (the input is plain bytes); stop rather than spin.
        if c.compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
            .is_err()
        {
            break;
        }
        // All input taken and room left over: the sync flush is complete.
        if c.total_in() as usize == plain.len() && out.len() < out.capacity() {
            break;
        }
    }
    out
}

/// The chunks of one gzip member made of `parts`, and their total length.
pub fn member(parts: &[&Encoded]) -> (Vec<Bytes>, usize) {
    let mut crc = crc32fast::Hasher::new();
    let mut size: u64 = 0;
    let mut chunks = Vec::with_capacity(parts.len() + 3);
    chunks.push(Bytes::from_static(&HEADER));
    for p in parts {
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            p.crc,
            p.plain.len() as u64,
        ));
        size += p.plain.len() as u64;
        chunks.push(p.deflate.clone());
    }
    let mut trailer = Vec::with_capacity(10);
    trailer.extend_from_slice(&FINAL_BLOCK);
    trailer.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952).
    trailer.extend_from_slice(&(size as u32).to_le_bytes());
    chunks.push(Bytes::from(trailer));
    let len = chunks.iter().map(Bytes::len).sum();
    (chunks, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(chunks: &[Bytes]) -> Vec<u8> {
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        // A single-member decoder: what curl and browsers do.
        let mut d = flate2::read::GzDecoder::new(&all[..]);
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("valid gzip");
        // Nothing after the one member.
        assert_eq!(d.into_inner().len(), 0, "trailing bytes after the member");
        out
    }

    #[test]
    fn segments_concatenate_into_one_member() {
        let table: &[&[&str]] = &[
            &[],
            &[""],
            &["a"],
            &["metric_a 1\n", "", "metric_b{x=\"y\"} 2\n"],
            &["x\n"; 5],
        ];
        for parts in table {
            let enc: Vec<Encoded> = parts
                .iter()
                .map(|p| Encoded::new(p.as_bytes().to_vec()))
                .collect();
            let refs: Vec<&Encoded> = enc.iter().collect();
            let (chunks, len) = member(&refs);
            assert_eq!(len, chunks.iter().map(Bytes::len).sum::<usize>());
            assert_eq!(decode(&chunks), parts.concat().into_bytes(), "{parts:?}");
        }
    }

    #[test]
    fn large_and_incompressible_bodies_round_trip() {
        let big: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let text = "deploywatch_health_probe_success{app=\"a\",target=\"t\"} 1\n".repeat(50_000);
        let a = Encoded::new(big.clone());
        let b = Encoded::new(text.clone().into_bytes());
        let (chunks, _) = member(&[&a, &b]);
        let mut want = big;
        want.extend_from_slice(text.as_bytes());
        assert_eq!(decode(&chunks), want);
        // Text compresses: the point of caching the compressed copy.
        assert!(b.deflate.len() * 5 < b.plain.len());
    }
}

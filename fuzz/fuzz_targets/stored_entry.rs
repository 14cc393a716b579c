//! The decoders of what the response cache reads back from a store (entry heads and URL
//! indexes, versioned binary encodings): damaged, truncated or foreign bytes decode to
//! nothing, never to garbage and never a panic; what decodes encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tower_etag::response_cache::fuzz_decode(data);
});

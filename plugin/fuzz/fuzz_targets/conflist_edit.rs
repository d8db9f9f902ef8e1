#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| csum_offload_fuzz::conflist_edit(data));

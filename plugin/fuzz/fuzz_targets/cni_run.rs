#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| csum_offload_fuzz::cni_run(data));

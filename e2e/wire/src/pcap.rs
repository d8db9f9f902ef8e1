//! A minimal pcap (libpcap 2.4, Ethernet) writer, so a capture can be
//! re-read with `tcpdump -r FILE -vv` as an independent check.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct PcapWriter {
    out: BufWriter<File>,
    snaplen: u32,
}

impl PcapWriter {
    pub fn create(path: &Path, snaplen: u32) -> io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?; // magic, microseconds
        out.write_all(&2u16.to_le_bytes())?; // version 2.4
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?; // thiszone
        out.write_all(&0u32.to_le_bytes())?; // sigfigs
        out.write_all(&snaplen.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
        Ok(Self { out, snaplen })
    }

    /// Writes one record: `data` as captured, `wire_len` as it was.
    pub fn write(&mut self, data: &[u8], wire_len: usize) -> io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let incl = data.len().min(self.snaplen as usize);
        self.out.write_all(&(now.as_secs() as u32).to_le_bytes())?;
        self.out.write_all(&now.subsec_micros().to_le_bytes())?;
        self.out.write_all(&(incl as u32).to_le_bytes())?;
        self.out.write_all(&(wire_len as u32).to_le_bytes())?;
        self.out.write_all(&data[..incl])
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let path = std::env::temp_dir().join(format!("wire-pcap-test-{}.pcap", std::process::id()));
        let mut w = PcapWriter::create(&path, 100).unwrap();
        w.write(&[1, 2, 3], 3).unwrap();
        w.write(&[0u8; 150], 150).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(bytes.len(), 24 + 16 + 3 + 16 + 100);
        // Second record: truncated to the snaplen, original length kept.
        let rec = &bytes[24 + 16 + 3..];
        assert_eq!(u32::from_le_bytes(rec[8..12].try_into().unwrap()), 100);
        assert_eq!(u32::from_le_bytes(rec[12..16].try_into().unwrap()), 150);
    }
}

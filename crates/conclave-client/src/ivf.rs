//! IVF, the simplest container for VP8 frames: a 32-byte file header, then
//! per frame a 12-byte header (size, timestamp) and the frame.
//!
//! Written here rather than taken from the `ivf` crate: that crate's writer
//! hard-codes the AV1 FourCC and panics on I/O errors, and its reader
//! allocates whatever size a frame header claims. This one refuses frames over
//! [`MAX_FRAME_BYTES`] and returns errors.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// Larger frames are refused as corrupt (a 4K key frame is well under this).
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfHeader {
    pub fourcc: [u8; 4],
    pub width: u16,
    pub height: u16,
    /// Timestamps count in units of `timebase_num / timebase_den` seconds.
    pub timebase_den: u32,
    pub timebase_num: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvfFrame {
    pub timestamp: u64,
    pub data: Vec<u8>,
}

pub struct IvfReader<R> {
    inner: R,
    pub header: IvfHeader,
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: Read> IvfReader<R> {
    pub fn new(mut inner: R) -> io::Result<Self> {
        let mut h = [0u8; 32];
        inner.read_exact(&mut h)?;
        if &h[0..4] != b"DKIF" {
            return Err(invalid("not an IVF file"));
        }
        let header_len = u16::from_le_bytes([h[6], h[7]]);
        if header_len < 32 {
            return Err(invalid("IVF header too short"));
        }
        // Skip any header extension.
        io::copy(
            &mut (&mut inner).take(u64::from(header_len - 32)),
            &mut io::sink(),
        )?;
        let header = IvfHeader {
            fourcc: [h[8], h[9], h[10], h[11]],
            width: u16::from_le_bytes([h[12], h[13]]),
            height: u16::from_le_bytes([h[14], h[15]]),
            timebase_den: u32::from_le_bytes([h[16], h[17], h[18], h[19]]),
            timebase_num: u32::from_le_bytes([h[20], h[21], h[22], h[23]]),
        };
        Ok(IvfReader { inner, header })
    }

    /// The next frame, or `None` at the end of the file.
    pub fn next_frame(&mut self) -> io::Result<Option<IvfFrame>> {
        let mut fh = [0u8; 12];
        let mut got = 0;
        while got < fh.len() {
            match self.inner.read(&mut fh[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(invalid("IVF frame header cut short")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let size = u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]) as usize;
        if size > MAX_FRAME_BYTES {
            return Err(invalid("IVF frame larger than 4 MiB"));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&fh[4..12]);
        let mut data = vec![0u8; size];
        self.inner.read_exact(&mut data)?;
        Ok(Some(IvfFrame {
            timestamp: u64::from_le_bytes(ts),
            data,
        }))
    }
}

pub struct IvfWriter<W> {
    inner: W,
    frames: u64,
    /// First and last frame timestamps written.
    span: Option<(u64, u64)>,
}

/// Where the header's length field is.
const LENGTH_AT: u64 = 24;

impl<W: Write> IvfWriter<W> {
    /// Writes the file header; `fourcc` is `*b"VP80"` for VP8.
    pub fn new(
        mut inner: W,
        fourcc: [u8; 4],
        width: u16,
        height: u16,
        timebase_den: u32,
    ) -> io::Result<Self> {
        let mut h = [0u8; 32];
        h[0..4].copy_from_slice(b"DKIF");
        h[6..8].copy_from_slice(&32u16.to_le_bytes());
        h[8..12].copy_from_slice(&fourcc);
        h[12..14].copy_from_slice(&width.to_le_bytes());
        h[14..16].copy_from_slice(&height.to_le_bytes());
        h[16..20].copy_from_slice(&timebase_den.to_le_bytes());
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        inner.write_all(&h)?;
        Ok(IvfWriter {
            inner,
            frames: 0,
            span: None,
        })
    }

    pub fn write_frame(&mut self, timestamp: u64, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| invalid("frame too large"))?;
        self.inner.write_all(&size.to_le_bytes())?;
        self.inner.write_all(&timestamp.to_le_bytes())?;
        self.inner.write_all(data)?;
        self.frames += 1;
        let first = self.span.map_or(timestamp, |(first, _)| first);
        self.span = Some((first, timestamp));
        Ok(())
    }

    /// The value for the header's length field: the stream's length in
    /// timebase units, which is how ffmpeg reads it (and writes it: the
    /// span of the timestamps stretched by one average frame). libvpx calls
    /// it the frame count, the same number when the timebase is one frame;
    /// with a 90 kHz timebase only the length gives players a duration.
    fn length(&self) -> u32 {
        match self.span {
            Some((first, last)) if self.frames >= 2 => {
                let span = u128::from(last.saturating_sub(first));
                let n = u128::from(self.frames);
                u32::try_from(span * n / (n - 1)).unwrap_or(u32::MAX)
            }
            _ => 0,
        }
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The writer, as it is: the header's length stays 0 (unknown). See
    /// [`IvfWriter::finish`] for a file.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write + Seek> IvfWriter<W> {
    /// Writes the stream's length into the header (players such as ffprobe
    /// show no duration without it) and returns the writer, positioned at
    /// the end again.
    pub fn finish(mut self) -> io::Result<W> {
        let length = self.length();
        self.inner.seek(SeekFrom::Start(LENGTH_AT))?;
        self.inner.write_all(&length.to_le_bytes())?;
        self.inner.seek(SeekFrom::End(0))?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut w = IvfWriter::new(Vec::new(), *b"VP80", 320, 240, 90_000).unwrap();
        w.write_frame(0, b"key").unwrap();
        w.write_frame(3000, b"delta").unwrap();
        let bytes = w.into_inner();
        let mut r = IvfReader::new(&bytes[..]).unwrap();
        assert_eq!(&r.header.fourcc, b"VP80");
        assert_eq!((r.header.width, r.header.height), (320, 240));
        assert_eq!(r.header.timebase_den, 90_000);
        assert_eq!(r.next_frame().unwrap().unwrap().data, b"key");
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.timestamp, f.data.as_slice()), (3000, &b"delta"[..]));
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn finishing_writes_the_length_in_timebase_units() {
        let mut w = IvfWriter::new(io::Cursor::new(Vec::new()), *b"VP80", 2, 2, 90_000).unwrap();
        for i in 0..4u64 {
            w.write_frame(i * 3000, b"f").unwrap();
        }
        assert_eq!(w.frames(), 4);
        let bytes = w.finish().unwrap().into_inner();
        // Timestamps 0..9000 over four frames: 12000 (4 × 1/30 s).
        assert_eq!(&bytes[24..28], &12_000u32.to_le_bytes());
        // The frames are still there, after the header.
        let mut r = IvfReader::new(&bytes[..]).unwrap();
        let mut n = 0;
        while r.next_frame().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        assert!(IvfReader::new(&b"RIFF"[..]).is_err());
        let mut w = IvfWriter::new(Vec::new(), *b"VP80", 1, 1, 30).unwrap();
        w.write_frame(0, b"x").unwrap();
        let mut bytes = w.into_inner();
        bytes[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = IvfReader::new(&bytes[..]).unwrap();
        assert!(r.next_frame().is_err());
        let mut r = IvfReader::new(&bytes[..40]).unwrap();
        assert!(r.next_frame().is_err());
    }
}

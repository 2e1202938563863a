//! Where a replay's bytes come from: the input read on a thread of its own, in chunks, so that
//! the line splitter can wait for them with a deadline. A pipe or stdin that trickles events
//! then still commits every second (a blocking read would hold a block open until 16 MiB or
//! the end of the input), and an interrupted replay stops within a second even while the
//! writer of a FIFO is silent.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Instant;

/// Bytes asked for per read. A read returns what is there (a pipe's few lines, or a full
/// chunk of a file or of inflated gzip), so memory stays a few chunks whatever the input.
const READ_BYTES: usize = 1 << 20;
/// Chunks read ahead of the splitter.
const AHEAD: usize = 4;

/// What the next call to [`Source::next`] found.
#[derive(Debug)]
pub enum Next {
    /// Bytes of the input, in order.
    Data(Vec<u8>),
    /// The input ended.
    End,
    /// Nothing came before the deadline.
    Wait,
}

/// The input, read ahead on a thread of its own.
pub struct Source {
    chunks: Receiver<io::Result<Vec<u8>>>,
    ended: bool,
}

impl Source {
    /// Starts reading `input`. The thread ends at the end of the input, on a read error, or
    /// when the `Source` is dropped and its next chunk is refused; one blocked on a silent
    /// FIFO stays blocked until the process exits, holding nothing else.
    pub fn spawn(input: Box<dyn Read + Send>) -> Self {
        let (tx, rx) = sync_channel(AHEAD);
        let spawned = std::thread::Builder::new()
            .name("optout-replay-read".into())
            .spawn(move || read_all(input, tx));
        let chunks = match spawned {
            Ok(_) => rx,
            Err(e) => {
                let (tx, rx) = sync_channel(1);
                let _ = tx.send(Err(e));
                rx
            }
        };
        Source {
            chunks,
            ended: false,
        }
    }

    /// The next chunk, waiting until `deadline` (for ever if `None`).
    pub fn next(&mut self, deadline: Option<Instant>) -> io::Result<Next> {
        if self.ended {
            return Ok(Next::End);
        }
        let got = match deadline {
            None => self
                .chunks
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => self
                .chunks
                .recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        match got {
            Ok(Ok(chunk)) => Ok(Next::Data(chunk)),
            Ok(Err(e)) => {
                self.ended = true;
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => Ok(Next::Wait),
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Ok(Next::End)
            }
        }
    }
}

fn read_all(mut input: Box<dyn Read + Send>, tx: SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut chunk = vec![0u8; READ_BYTES];
        match input.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                chunk.truncate(n);
                if n < READ_BYTES / 4 {
                    chunk.shrink_to_fit(); // a pipe's few lines need not hold a whole chunk
                }
                if tx.send(Ok(chunk)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// Opens an input that may be gzip (recognised by its magic bytes, whatever its name):
/// `MultiGzDecoder` because Firehose and `cat a.gz b.gz` both produce several gzip members.
pub fn maybe_gzip(mut src: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match src.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let gzip = head[..got] == [0x1f, 0x8b];
    let whole = io::Cursor::new(head[..got].to_vec()).chain(src);
    if gzip {
        let buffered = io::BufReader::with_capacity(1 << 20, whole);
        return Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buffered)));
    }
    Ok(Box::new(whole))
}

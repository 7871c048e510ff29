//! The buffers of one send (the WSABUF array of WSPSend and WSPSendTo, SPEC
//! SE-1): their bytes back to back and each one's length, as the guest
//! passes them. Lifting them costs the host two copies whatever their
//! number, and the policy's bound on their number is checked before
//! anything else looks at them (DESIGN §4: bounded work per host call).

use crate::error::WsaError;

/// The buffers of one send call.
#[derive(Clone, Copy, Debug)]
pub struct Buffers<'a> {
    data: &'a [u8],
    lengths: Lengths<'a>,
}

#[derive(Clone, Copy, Debug)]
enum Lengths<'a> {
    /// One buffer: all of `data`.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    One,
    /// Each buffer's length, in order.
    Each(&'a [u32]),
}

impl<'a> Buffers<'a> {
    /// One buffer.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn one(data: &'a [u8]) -> Self {
        Self {
            data,
            lengths: Lengths::One,
        }
    }

    /// The buffers whose bytes are `data`, back to back, with `lengths`.
    pub fn new(data: &'a [u8], lengths: &'a [u32]) -> Self {
        Self {
            data,
            lengths: Lengths::Each(lengths),
        }
    }

    /// How many buffers the guest passed.
    pub fn count(&self) -> usize {
        match self.lengths {
            Lengths::One => 1,
            Lengths::Each(lengths) => lengths.len(),
        }
    }

    /// The bytes to send, in order (SPEC SE-1: one write, one datagram);
    /// `WSAEFAULT` when the lengths do not add up to the bytes passed.
    pub fn bytes(&self) -> Result<&'a [u8], WsaError> {
        if let Lengths::Each(lengths) = self.lengths {
            let total: u64 = lengths.iter().map(|&n| u64::from(n)).sum();
            if total != self.data.len() as u64 {
                return Err(WsaError::Fault);
            }
        }
        Ok(self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_must_add_up_to_the_bytes() {
        let data = b"abcdef";
        assert_eq!(Buffers::new(data, &[2, 4]).bytes(), Ok(&data[..]));
        assert_eq!(Buffers::new(data, &[2, 4]).count(), 2);
        assert_eq!(Buffers::new(data, &[2, 3]).bytes(), Err(WsaError::Fault));
        assert_eq!(
            Buffers::new(data, &[u32::MAX, 7]).bytes(),
            Err(WsaError::Fault)
        );
        assert_eq!(Buffers::new(b"", &[]).bytes(), Ok(&b""[..]));
        assert_eq!(Buffers::one(data).count(), 1);
    }
}

//! TLS session tickets that every worker can open: a client resumes its
//! session on whichever worker accepts its next connection.
//!
//! The master makes one random secret ([`TicketSecret::generate`]) and
//! hands it to every worker with the TLS material. Each worker derives the
//! ticket key of the current period from it (HKDF-SHA256 of the secret and
//! the period's number; wall-clock periods of [`PERIOD_SECS`], which every
//! process on the machine agrees on), so keys roll without the workers
//! speaking to each other. A ticket is `period (8 bytes) || nonce (12) ||
//! ChaCha20-Poly1305(state)`, with the period as additional data; tickets
//! of the current and the previous period open, older ones do not (the
//! key of a past period is never derived again).

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf::{Prk, Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long one ticket key is used to seal tickets (6 hours, rustls's own
/// rotation); a ticket opens for up to twice that.
const PERIOD_SECS: u64 = 6 * 60 * 60;
/// The bytes before the sealed state.
const HEADER_LEN: usize = 8 + NONCE_LEN;

/// The secret the ticket keys are derived from.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TicketSecret([u8; 32]);

impl std::fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSecret(..)")
    }
}

impl TicketSecret {
    /// A fresh random secret; `None` if the system has no randomness.
    pub fn generate() -> Option<TicketSecret> {
        let mut secret = [0u8; 32];
        SystemRandom::new().fill(&mut secret).ok()?;
        Some(TicketSecret(secret))
    }
}

/// Seals and opens tickets with the keys derived from one secret.
pub struct SharedTickets {
    secret: Prk,
    random: SystemRandom,
}

impl std::fmt::Debug for SharedTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTickets")
    }
}

impl SharedTickets {
    pub fn new(secret: &TicketSecret) -> SharedTickets {
        SharedTickets {
            secret: Salt::new(HKDF_SHA256, b"rgunicorn session tickets").extract(&secret.0),
            random: SystemRandom::new(),
        }
    }

    fn key(&self, period: u64) -> Option<LessSafeKey> {
        let info = period.to_be_bytes();
        let info = [&info[..]];
        let okm = self.secret.expand(&info, &CHACHA20_POLY1305).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

fn current_period() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_secs() / PERIOD_SECS)
}

impl ProducesTickets for SharedTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        PERIOD_SECS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let period = current_period();
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(HEADER_LEN + plain.len() + aead::MAX_TAG_LEN);
        ticket.extend_from_slice(&period.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        self.key(period)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(period.to_be_bytes()),
                &mut sealed,
            )
            .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let period = u64::from_be_bytes(cipher.get(..8)?.try_into().ok()?);
        let now = current_period();
        if period != now && period.checked_add(1) != Some(now) {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = cipher.get(8..HEADER_LEN)?.try_into().ok()?;
        let mut sealed = cipher.get(HEADER_LEN..)?.to_vec();
        let plain = self
            .key(period)?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(period.to_be_bytes()),
                &mut sealed,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_sealed_by_one_worker_opens_in_another_with_the_same_secret() {
        let secret = TicketSecret::generate().unwrap();
        let ticket = SharedTickets::new(&secret).encrypt(b"session").unwrap();
        assert_eq!(
            SharedTickets::new(&secret).decrypt(&ticket).as_deref(),
            Some(&b"session"[..])
        );
    }

    #[test]
    fn a_ticket_of_another_secret_or_tampered_with_does_not_open() {
        let ticket = SharedTickets::new(&TicketSecret::generate().unwrap())
            .encrypt(b"session")
            .unwrap();
        let other = SharedTickets::new(&TicketSecret::generate().unwrap());
        assert_eq!(other.decrypt(&ticket), None);
        let tickets = SharedTickets::new(&TicketSecret([7; 32]));
        let mut ticket = tickets.encrypt(b"session").unwrap();
        *ticket.last_mut().unwrap() ^= 1;
        assert_eq!(tickets.decrypt(&ticket), None);
        for short in [&[][..], &[0; 5][..], &ticket[..HEADER_LEN]] {
            assert_eq!(tickets.decrypt(short), None);
        }
    }

    #[test]
    fn a_ticket_older_than_the_previous_period_does_not_open() {
        let tickets = SharedTickets::new(&TicketSecret([9; 32]));
        let mut ticket = tickets.encrypt(b"session").unwrap();
        let old = current_period() - 2;
        ticket[..8].copy_from_slice(&old.to_be_bytes());
        assert_eq!(tickets.decrypt(&ticket), None);
    }
}

//! LOGIN7 decoding.
use crate::wire::{utf16le_to_string, Reader};
use crate::DecodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureExt {
    pub id: u8,
    pub data: Vec<u8>,
}

impl FeatureExt {
    pub const SESSION_RECOVERY: u8 = 0x01;
    pub const FEDAUTH: u8 = 0x02;
    pub const COLUMN_ENCRYPTION: u8 = 0x04;
    pub const GLOBAL_TRANSACTIONS: u8 = 0x05;
    pub const AZURE_SQL_SUPPORT: u8 = 0x08;
    pub const DATA_CLASSIFICATION: u8 = 0x09;
    pub const UTF8_SUPPORT: u8 = 0x0A;
}

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Login7 {
    /// As the client sent it, e.g. 0x74000004 for TDS 7.4.
    pub tds_version: u32,
    pub packet_size: u32,
    pub client_prog_version: u32,
    pub client_pid: u32,
    pub connection_id: u32,
    pub option_flags1: u8,
    pub option_flags2: u8,
    pub type_flags: u8,
    pub option_flags3: u8,
    pub client_timezone: i32,
    pub client_lcid: u32,
    pub hostname: String,
    pub username: String,
    pub password: String,
    pub app_name: String,
    pub server_name: String,
    pub library_name: String,
    pub language: String,
    pub database: String,
    pub client_id: [u8; 6],
    pub sspi: Vec<u8>,
    pub attach_db_file: String,
    pub change_password: String,
    pub features: Vec<FeatureExt>,
}

impl std::fmt::Debug for Login7 {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login7")
            .field("tds_version", &format_args!("{:#010x}", self.tds_version))
            .field("packet_size", &self.packet_size)
            .field("hostname", &self.hostname)
            .field("username", &self.username)
            .field("app_name", &self.app_name)
            .field("server_name", &self.server_name)
            .field("library_name", &self.library_name)
            .field("language", &self.language)
            .field("database", &self.database)
            .field("integrated_security", &self.integrated_security())
            .field(
                "features",
                &self.features.iter().map(|f| f.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Password bytes are nibble-swapped then XORed with 0xA5; undo both.
pub fn deobfuscate_password(b: &[u8]) -> Vec<u8> {
    b.iter().map(|&x| (x ^ 0xA5).rotate_left(4)).collect()
}

pub fn obfuscate_password(b: &[u8]) -> Vec<u8> {
    b.iter().map(|&x| x.rotate_left(4) ^ 0xA5).collect()
}

const FIXED_LEN: usize = 94;
const FEXTENSION: u8 = 0x10;
const FINTEGRATED_SECURITY: u8 = 0x80;

impl Login7 {
    pub fn integrated_security(&self) -> bool {
        self.option_flags2 & FINTEGRATED_SECURITY != 0
    }

    /// Read-only intent (ApplicationIntent=ReadOnly) flag in TypeFlags.
    pub fn read_only_intent(&self) -> bool {
        self.type_flags & 0x20 != 0
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let length = r.u32_le()? as usize;
        if length > b.len() || length < FIXED_LEN {
            return Err(DecodeError::Invalid("LOGIN7 length"));
        }
        let b = &b[..length];
        let mut l = Login7 {
            tds_version: r.u32_le()?,
            packet_size: r.u32_le()?,
            client_prog_version: r.u32_le()?,
            client_pid: r.u32_le()?,
            connection_id: r.u32_le()?,
            option_flags1: r.u8()?,
            option_flags2: r.u8()?,
            type_flags: r.u8()?,
            option_flags3: r.u8()?,
            client_timezone: r.i32_le()?,
            client_lcid: r.u32_le()?,
            ..Default::default()
        };
        // (offset, length) pairs; lengths are in UTF-16 units except SSPI and extension.
        let pair = |r: &mut Reader<'_>| -> Result<(usize, usize), DecodeError> {
            Ok((r.u16_le()? as usize, r.u16_le()? as usize))
        };
        let slice = |off: usize, len: usize| -> Result<&[u8], DecodeError> {
            if len == 0 {
                return Ok(&[]);
            }
            b.get(off..off.checked_add(len).ok_or(DecodeError::Eof)?)
                .ok_or(DecodeError::Invalid("LOGIN7 field out of range"))
        };
        let text = |(off, len): (usize, usize)| -> Result<String, DecodeError> {
            Ok(utf16le_to_string(slice(off, len * 2)?))
        };
        l.hostname = text(pair(&mut r)?)?;
        l.username = text(pair(&mut r)?)?;
        let (po, pl) = pair(&mut r)?;
        let pw = deobfuscate_password(slice(po, pl * 2)?);
        l.password = utf16le_to_string(&pw);
        l.app_name = text(pair(&mut r)?)?;
        l.server_name = text(pair(&mut r)?)?;
        let (eo, el) = pair(&mut r)?;
        l.library_name = text(pair(&mut r)?)?;
        l.language = text(pair(&mut r)?)?;
        l.database = text(pair(&mut r)?)?;
        l.client_id = r.arr()?;
        let (so, sl) = pair(&mut r)?;
        l.attach_db_file = text(pair(&mut r)?)?;
        l.change_password = {
            let (co, cl) = pair(&mut r)?;
            utf16le_to_string(&deobfuscate_password(slice(co, cl * 2)?))
        };
        let sspi_long = r.u32_le()? as usize;
        let sspi_len = if sl == 0xFFFF && sspi_long > 0 {
            sspi_long
        } else {
            sl
        };
        l.sspi = slice(so, sspi_len)?.to_vec();
        if l.option_flags3 & FEXTENSION != 0 && el >= 4 {
            let ext = slice(eo, 4)?;
            let fo = u32::from_le_bytes([ext[0], ext[1], ext[2], ext[3]]) as usize;
            if fo != 0 {
                let data = b
                    .get(fo..)
                    .ok_or(DecodeError::Invalid("feature ext offset"))?;
                l.features = decode_features(data)?;
            }
        }
        Ok(l)
    }
}

fn decode_features(b: &[u8]) -> Result<Vec<FeatureExt>, DecodeError> {
    let mut r = Reader::new(b);
    let mut out = Vec::new();
    loop {
        let id = r.u8()?;
        if id == 0xFF {
            return Ok(out);
        }
        let len = r.u32_le()? as usize;
        out.push(FeatureExt {
            id,
            data: r.take(len)?.to_vec(),
        });
    }
}

/// Builds a LOGIN7 payload (for tests and fuzz corpora; servers only decode).
pub fn encode_login7(l: &Login7) -> Vec<u8> {
    let mut fixed = vec![0u8; 4]; // total length, patched at the end
    let mut var: Vec<u8> = Vec::new();
    for v in [
        l.tds_version,
        l.packet_size,
        l.client_prog_version,
        l.client_pid,
        l.connection_id,
    ] {
        fixed.extend_from_slice(&v.to_le_bytes());
    }
    let flags3 = if l.features.is_empty() {
        l.option_flags3
    } else {
        l.option_flags3 | FEXTENSION
    };
    fixed.extend_from_slice(&[l.option_flags1, l.option_flags2, l.type_flags, flags3]);
    fixed.extend_from_slice(&l.client_timezone.to_le_bytes());
    fixed.extend_from_slice(&l.client_lcid.to_le_bytes());
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect() };
    let put = |fixed: &mut Vec<u8>, var: &mut Vec<u8>, data: Vec<u8>, units: usize| {
        let off = FIXED_LEN + var.len();
        fixed.extend_from_slice(&(off as u16).to_le_bytes());
        fixed.extend_from_slice(&(units as u16).to_le_bytes());
        var.extend_from_slice(&data);
    };
    let s = |x: &str| (utf16(x), x.encode_utf16().count());
    let (d, n) = s(&l.hostname);
    put(&mut fixed, &mut var, d, n);
    let (d, n) = s(&l.username);
    put(&mut fixed, &mut var, d, n);
    let (d, n) = s(&l.password);
    put(&mut fixed, &mut var, obfuscate_password(&d), n);
    let (d, n) = s(&l.app_name);
    put(&mut fixed, &mut var, d, n);
    let (d, n) = s(&l.server_name);
    put(&mut fixed, &mut var, d, n);
    // Extension: a DWORD pointing at the feature block, patched below.
    let ext_pos = if l.features.is_empty() {
        put(&mut fixed, &mut var, Vec::new(), 0);
        None
    } else {
        put(&mut fixed, &mut var, vec![0; 4], 4);
        Some(var.len() - 4)
    };
    let (d, n) = s(&l.library_name);
    put(&mut fixed, &mut var, d, n);
    let (d, n) = s(&l.language);
    put(&mut fixed, &mut var, d, n);
    let (d, n) = s(&l.database);
    put(&mut fixed, &mut var, d, n);
    fixed.extend_from_slice(&l.client_id);
    let sspi = l.sspi.clone();
    let sl = sspi.len();
    put(&mut fixed, &mut var, sspi, sl);
    let (d, n) = s(&l.attach_db_file);
    put(&mut fixed, &mut var, d, n);
    let (d, n) = s(&l.change_password);
    put(&mut fixed, &mut var, obfuscate_password(&d), n);
    fixed.extend_from_slice(&0u32.to_le_bytes());
    if let Some(p) = ext_pos {
        let fo = (FIXED_LEN + var.len()) as u32;
        var[p..p + 4].copy_from_slice(&fo.to_le_bytes());
        for f in &l.features {
            var.push(f.id);
            var.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
            var.extend_from_slice(&f.data);
        }
        var.push(0xFF);
    }
    let mut out = fixed;
    out.extend_from_slice(&var);
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_obfuscation_known_vector() {
        // 'a' (0x61, 0x00) obfuscates to 0xB3, 0xA5 per the spec's algorithm.
        assert_eq!(obfuscate_password(&[0x61, 0x00]), vec![0xB3, 0xA5]);
        assert_eq!(deobfuscate_password(&[0xB3, 0xA5]), vec![0x61, 0x00]);
    }

    #[test]
    fn round_trip_with_features() {
        let l = Login7 {
            tds_version: 0x7400_0004,
            packet_size: 8192,
            option_flags2: 0x03,
            option_flags3: 0x10,
            hostname: "host".into(),
            username: "sa".into(),
            password: "Pässw0rd!".into(),
            app_name: "test".into(),
            server_name: "localhost".into(),
            library_name: "tedious".into(),
            language: "us_english".into(),
            database: "master".into(),
            features: vec![FeatureExt {
                id: FeatureExt::UTF8_SUPPORT,
                data: vec![],
            }],
            ..Default::default()
        };
        let b = encode_login7(&l);
        let d = Login7::decode(&b).unwrap();
        assert_eq!(d, l);
        assert!(!format!("{d:?}").contains("Pässw0rd"));
    }

    #[test]
    fn truncated() {
        let l = Login7 {
            username: "sa".into(),
            ..Default::default()
        };
        let b = encode_login7(&l);
        for n in 0..b.len() {
            assert!(Login7::decode(&b[..n]).is_err());
        }
    }
}

//! Names of the bits the probes pass to and read from KVM: guest_memfd
//! creation flags, VM types and memory attributes. Cases name them
//! (`"MMAP"`, `"sw_protected"`); observations decode masks back to names so a
//! snapshot says `["MMAP", "INIT_SHARED"]` rather than `3`.

use serde::{Deserialize, Serialize};

/// `GUEST_MEMFD_FLAG_*` (include/uapi/linux/kvm.h), and bit 2, the
/// out-of-tree direct-map removal flag (see DESIGN.md).
const GMEM_FLAG_NAMES: [(&str, u32); 3] = [("MMAP", 0), ("INIT_SHARED", 1), ("NO_DIRECT_MAP", 2)];

/// One guest_memfd flag as a case names it: `"MMAP"`, `"INIT_SHARED"`,
/// `"NO_DIRECT_MAP"` or `"bit N"` (any bit, to try unknown ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GmemFlag(pub u32);

impl GmemFlag {
    pub const MMAP: GmemFlag = GmemFlag(0);
    pub const INIT_SHARED: GmemFlag = GmemFlag(1);
    pub const NO_DIRECT_MAP: GmemFlag = GmemFlag(2);

    pub fn mask(self) -> u64 {
        1 << self.0
    }
}

/// The flags most probes default to: a guest_memfd its owner can mmap and
/// use as shared memory.
pub fn mappable() -> Vec<GmemFlag> {
    vec![GmemFlag::MMAP, GmemFlag::INIT_SHARED]
}

/// The flags of the probes about direct-map removal: a mappable guest_memfd
/// whose pages leave the direct map.
pub fn mappable_no_direct_map() -> Vec<GmemFlag> {
    vec![
        GmemFlag::MMAP,
        GmemFlag::INIT_SHARED,
        GmemFlag::NO_DIRECT_MAP,
    ]
}

impl TryFrom<String> for GmemFlag {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Some((_, bit)) = GMEM_FLAG_NAMES.iter().find(|(n, _)| *n == s) {
            return Ok(GmemFlag(*bit));
        }
        parse_bit(&s).map(GmemFlag).ok_or_else(|| {
            format!("unknown guest_memfd flag {s:?} (expected MMAP, INIT_SHARED, NO_DIRECT_MAP or \"bit N\" with N < 64)")
        })
    }
}

impl From<GmemFlag> for String {
    fn from(f: GmemFlag) -> String {
        bit_name(&GMEM_FLAG_NAMES, f.0)
    }
}

/// The mask of a list of flags.
pub fn gmem_mask(flags: &[GmemFlag]) -> u64 {
    flags.iter().fold(0, |m, f| m | f.mask())
}

/// What a probe does with flags the kernel does not advertise in
/// `KVM_CAP_GUEST_MEMFD_FLAGS`: `keep` them (KVM_CREATE_GUEST_MEMFD then
/// says EINVAL, an observation of its own) or `drop` them, so that one case
/// runs on kernels with and without a flag and shows, on those without it,
/// what a guest_memfd without the flag does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfUnsupported {
    #[default]
    Keep,
    Drop,
}

/// Splits `flags` (in their order) into those set in the `supported` mask
/// and those not.
pub fn split_supported(flags: &[GmemFlag], supported: u64) -> (Vec<GmemFlag>, Vec<GmemFlag>) {
    flags.iter().partition(|f| supported & f.mask() != 0)
}

/// The names of the bits set in a guest_memfd flags mask.
pub fn gmem_flag_names(mask: u64) -> Vec<String> {
    decode(&GMEM_FLAG_NAMES, mask)
}

/// `KVM_X86_*_VM` (arch/x86/include/uapi/asm/kvm.h).
const VM_TYPE_NAMES: [(&str, u32); 6] = [
    ("DEFAULT", 0),
    ("SW_PROTECTED", 1),
    ("SEV", 2),
    ("SEV_ES", 3),
    ("SNP", 4),
    ("TDX", 5),
];

/// The VM type a probe creates its VM with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmType {
    #[default]
    Default,
    SwProtected,
    Sev,
    SevEs,
    Snp,
    Tdx,
}

impl VmType {
    /// The `KVM_CREATE_VM` argument.
    pub fn raw(self) -> u64 {
        match self {
            VmType::Default => 0,
            VmType::SwProtected => 1,
            VmType::Sev => 2,
            VmType::SevEs => 3,
            VmType::Snp => 4,
            VmType::Tdx => 5,
        }
    }
}

/// The names of the VM types in a `KVM_CAP_VM_TYPES` mask (bit N = type N).
pub fn vm_type_names(mask: u64) -> Vec<String> {
    decode(&VM_TYPE_NAMES, mask)
}

/// `KVM_MEMORY_ATTRIBUTE_*`.
const MEMORY_ATTRIBUTE_NAMES: [(&str, u32); 1] = [("PRIVATE", 3)];
pub const MEMORY_ATTRIBUTE_PRIVATE: u64 = 1 << 3;

pub fn memory_attribute_names(mask: u64) -> Vec<String> {
    decode(&MEMORY_ATTRIBUTE_NAMES, mask)
}

fn decode(names: &[(&str, u32)], mask: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| bit_name(names, bit))
        .collect()
}

fn bit_name(names: &[(&str, u32)], bit: u32) -> String {
    match names.iter().find(|(_, b)| *b == bit) {
        Some((name, _)) => name.to_string(),
        None => format!("bit {bit}"),
    }
}

fn parse_bit(s: &str) -> Option<u32> {
    let n: u32 = s.strip_prefix("bit ")?.trim().parse().ok()?;
    (n < 64).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_guest_memfd_flags() {
        assert_eq!(gmem_flag_names(0x3), ["MMAP", "INIT_SHARED"]);
        assert_eq!(
            gmem_flag_names(0x7),
            ["MMAP", "INIT_SHARED", "NO_DIRECT_MAP"]
        );
        assert_eq!(gmem_flag_names(0x9), ["MMAP", "bit 3"]);
        assert!(gmem_flag_names(0).is_empty());
    }

    #[test]
    fn parses_flag_names_and_bits() {
        let flags: Vec<GmemFlag> =
            serde_json::from_str(r#"["MMAP","INIT_SHARED","NO_DIRECT_MAP","bit 63"]"#).unwrap();
        assert_eq!(gmem_mask(&flags), 0x7 | (1 << 63));
        assert_eq!(
            serde_json::to_string(&flags).unwrap(),
            r#"["MMAP","INIT_SHARED","NO_DIRECT_MAP","bit 63"]"#
        );
        let err = serde_json::from_str::<Vec<GmemFlag>>(r#"["mmap"]"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown guest_memfd flag \"mmap\""),
            "{err}"
        );
        assert!(serde_json::from_str::<Vec<GmemFlag>>(r#"["bit 64"]"#).is_err());
    }

    #[test]
    fn splits_supported_flags_in_order() {
        let asked = [
            GmemFlag::MMAP,
            GmemFlag::NO_DIRECT_MAP,
            GmemFlag::INIT_SHARED,
        ];
        let (kept, dropped) = split_supported(&asked, 0x3);
        assert_eq!(kept, [GmemFlag::MMAP, GmemFlag::INIT_SHARED]);
        assert_eq!(dropped, [GmemFlag::NO_DIRECT_MAP]);
        let (kept, dropped) = split_supported(&asked, 0x7);
        assert_eq!(kept, asked);
        assert!(dropped.is_empty());
        let (kept, dropped) = split_supported(&asked, 0);
        assert!(kept.is_empty());
        assert_eq!(dropped, asked);
        assert_eq!(
            serde_json::from_str::<IfUnsupported>(r#""drop""#).unwrap(),
            IfUnsupported::Drop
        );
        assert_eq!(IfUnsupported::default(), IfUnsupported::Keep);
    }

    #[test]
    fn decodes_vm_types_and_attributes() {
        assert_eq!(vm_type_names(0x3), ["DEFAULT", "SW_PROTECTED"]);
        assert_eq!(
            vm_type_names(0x3d),
            ["DEFAULT", "SEV", "SEV_ES", "SNP", "TDX"]
        );
        assert_eq!(vm_type_names(0x41), ["DEFAULT", "bit 6"]);
        assert_eq!(memory_attribute_names(0x8), ["PRIVATE"]);
        assert_eq!(VmType::SwProtected.raw(), 1);
        assert_eq!(
            serde_json::from_str::<VmType>(r#""sw_protected""#).unwrap(),
            VmType::SwProtected
        );
    }
}

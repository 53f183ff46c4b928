//! Names of the bits the probes pass to and read from KVM: guest_memfd
//! creation flags, VM types and memory attributes. Cases name them
//! (`"MMAP"`, `"sw_protected"`); observations decode masks back to names so a
//! snapshot says `["MMAP", "INIT_SHARED"]` rather than `3`.

pub use gmem_protocol::args::{
    mappable, mappable_no_direct_map, GmemFlag, IfUnsupported, VmType, GMEM_FLAG_NAMES,
};

/// The mask of a list of flags.
pub fn gmem_mask(flags: &[GmemFlag]) -> u64 {
    flags.iter().fold(0, |m, f| m | f.mask())
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

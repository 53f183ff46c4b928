//! The few 32-bit x86 instructions the L2 programs of `kvm_access` use,
//! assembled by hand: flat protected mode, no paging, so every address is a
//! guest-physical one. Each method appends one instruction (or a fixed
//! sequence) and says which registers it clobbers.

/// General-purpose registers, numbered as in their encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // the full register file, named as the manuals do
pub enum Reg {
    Eax = 0,
    Ecx = 1,
    Edx = 2,
    Ebx = 3,
    Esp = 4,
    Ebp = 5,
    Esi = 6,
    Edi = 7,
}

/// Where an L2 program reports a 32-bit value (`out dx, eax`).
pub const REPORT_PORT: u16 = 0x510;
/// Where an exception stub reports its vector.
pub const EXCEPTION_PORT: u16 = 0x511;

/// A program being assembled.
#[derive(Debug, Default, Clone)]
pub struct Code {
    pub bytes: Vec<u8>,
}

impl Code {
    pub fn new() -> Code {
        Code::default()
    }

    fn emit(&mut self, b: &[u8]) -> &mut Code {
        self.bytes.extend_from_slice(b);
        self
    }

    /// `mov r32, imm32`.
    pub fn mov_imm(&mut self, r: Reg, v: u32) -> &mut Code {
        self.emit(&[0xb8 + r as u8]).emit(&v.to_le_bytes())
    }

    /// `mov eax, [addr]`.
    pub fn load_eax(&mut self, addr: u32) -> &mut Code {
        self.emit(&[0xa1]).emit(&addr.to_le_bytes())
    }

    /// `mov [addr], eax`.
    pub fn store_eax(&mut self, addr: u32) -> &mut Code {
        self.emit(&[0xa3]).emit(&addr.to_le_bytes())
    }

    /// `movzx eax, word [addr]`.
    pub fn load_eax_word(&mut self, addr: u32) -> &mut Code {
        self.emit(&[0x0f, 0xb7, 0x05]).emit(&addr.to_le_bytes())
    }

    /// `wrmsr` of `value` into `msr` (clobbers eax, ecx, edx).
    pub fn wrmsr(&mut self, msr: u32, value: u64) -> &mut Code {
        self.mov_imm(Reg::Ecx, msr)
            .mov_imm(Reg::Eax, value as u32)
            .mov_imm(Reg::Edx, (value >> 32) as u32)
            .emit(&[0x0f, 0x30])
    }

    /// Sets `bits` in `msr` (`rdmsr`, `or eax`, `wrmsr`; clobbers eax, ecx, edx).
    pub fn set_msr_bits(&mut self, msr: u32, bits: u32) -> &mut Code {
        self.mov_imm(Reg::Ecx, msr)
            .emit(&[0x0f, 0x32]) // rdmsr
            .emit(&[0x0d])
            .emit(&bits.to_le_bytes()) // or eax, bits
            .emit(&[0x0f, 0x30]) // wrmsr
    }

    /// `out port, eax` (clobbers edx).
    pub fn out_eax(&mut self, port: u16) -> &mut Code {
        self.emit(&[0x66, 0xba])
            .emit(&port.to_le_bytes())
            .emit(&[0xef])
    }

    /// Reports eax on [`REPORT_PORT`] (clobbers edx).
    pub fn report_eax(&mut self) -> &mut Code {
        self.out_eax(REPORT_PORT)
    }

    /// Reports the dword at `addr` (clobbers eax, edx).
    pub fn report_dword(&mut self, addr: u32) -> &mut Code {
        self.load_eax(addr).report_eax()
    }

    /// `rep outsb` of `count` bytes from `src` to `port` (clobbers ecx, edx, esi).
    pub fn rep_outsb(&mut self, src: u32, count: u32, port: u16) -> &mut Code {
        self.mov_imm(Reg::Esi, src)
            .mov_imm(Reg::Ecx, count)
            .emit(&[0x66, 0xba])
            .emit(&port.to_le_bytes())
            .emit(&[0xfc, 0xf3, 0x6e]) // cld; rep outsb
    }

    /// `rep insb` of `count` bytes from `port` to `dst` (clobbers ecx, edx, edi).
    pub fn rep_insb(&mut self, dst: u32, count: u32, port: u16) -> &mut Code {
        self.mov_imm(Reg::Edi, dst)
            .mov_imm(Reg::Ecx, count)
            .emit(&[0x66, 0xba])
            .emit(&port.to_le_bytes())
            .emit(&[0xfc, 0xf3, 0x6c]) // cld; rep insb
    }

    /// `mov fs, ax`-style load of a segment selector into fs (clobbers eax).
    pub fn load_fs(&mut self, selector: u16) -> &mut Code {
        self.mov_imm(Reg::Eax, selector.into()).emit(&[0x8e, 0xe0])
    }

    /// `vmsave` with the VMCB at `vmcb` (clobbers eax).
    pub fn vmsave(&mut self, vmcb: u32) -> &mut Code {
        self.mov_imm(Reg::Eax, vmcb).emit(&[0x0f, 0x01, 0xdb])
    }

    /// `vmrun` with the VMCB at `vmcb` (clobbers eax).
    pub fn vmrun(&mut self, vmcb: u32) -> &mut Code {
        self.mov_imm(Reg::Eax, vmcb).emit(&[0x0f, 0x01, 0xd8])
    }

    /// `jmp` to an absolute address (clobbers eax).
    pub fn jmp_abs(&mut self, addr: u32) -> &mut Code {
        self.mov_imm(Reg::Eax, addr).emit(&[0xff, 0xe0])
    }

    pub fn hlt(&mut self) -> &mut Code {
        self.emit(&[0xf4])
    }

    pub fn sti(&mut self) -> &mut Code {
        self.emit(&[0xfb])
    }

    /// `1: hlt; jmp 1b`: waits for interrupts forever.
    pub fn hlt_loop(&mut self) -> &mut Code {
        self.emit(&[0xf4, 0xeb, 0xfd])
    }
}

/// The flat GDT the programs run with: null, code (selector 0x08), data
/// (selector 0x10); interrupt delivery reloads CS from it.
pub fn gdt() -> Vec<u8> {
    [0u64, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff]
        .iter()
        .flat_map(|d| d.to_le_bytes())
        .collect()
}

pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;

/// How many exception vectors get a stub.
pub const VECTORS: u32 = 32;
/// Bytes per exception stub.
const STUB_SIZE: u32 = 16;

/// A present, DPL 0, 32-bit interrupt gate to `handler` (in the code segment).
pub fn gate(handler: u32) -> [u8; 8] {
    let low = (u32::from(CODE_SELECTOR) << 16) | (handler & 0xffff);
    let high = (handler & 0xffff_0000) | 0x8e00;
    let mut g = [0; 8];
    g[..4].copy_from_slice(&low.to_le_bytes());
    g[4..].copy_from_slice(&high.to_le_bytes());
    g
}

/// An IDT whose 32 exception gates lead to stubs at `stubs` + 16 * vector,
/// and those stubs: each reports its vector on [`EXCEPTION_PORT`] and halts.
pub fn idt_and_stubs(stubs: u32) -> (Vec<u8>, Vec<u8>) {
    let mut idt = Vec::new();
    let mut code = Vec::new();
    for v in 0..VECTORS {
        idt.extend_from_slice(&gate(stubs + v * STUB_SIZE));
        let mut stub = Code::new();
        stub.mov_imm(Reg::Eax, v).out_eax(EXCEPTION_PORT).hlt();
        stub.bytes.resize(STUB_SIZE as usize, 0xf4);
        code.extend_from_slice(&stub.bytes);
    }
    (idt, code)
}

/// The name of an exception vector.
pub fn vector_name(v: u32) -> String {
    const NAMES: [&str; 20] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#MF", "#TS", "#NP", "#SS",
        "#GP", "#PF", "(15)", "#MF", "#AC", "#MC", "#XM",
    ];
    NAMES
        .get(v as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("vector {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodings checked against an assembler's output.
    #[test]
    fn encodings() {
        let mut c = Code::new();
        c.mov_imm(Reg::Ecx, 0x4b56_4d01);
        assert_eq!(c.bytes, [0xb9, 0x01, 0x4d, 0x56, 0x4b]);
        let mut c = Code::new();
        c.out_eax(0x510).hlt();
        assert_eq!(c.bytes, [0x66, 0xba, 0x10, 0x05, 0xef, 0xf4]);
        let mut c = Code::new();
        c.load_eax(0x4000).store_eax(0x10_0000);
        assert_eq!(
            c.bytes,
            [0xa1, 0x00, 0x40, 0x00, 0x00, 0xa3, 0x00, 0x00, 0x10, 0x00]
        );
        let mut c = Code::new();
        c.vmsave(0x4000);
        assert_eq!(&c.bytes[5..], [0x0f, 0x01, 0xdb]);
        let mut c = Code::new();
        c.load_eax_word(0x4440);
        assert_eq!(c.bytes, [0x0f, 0xb7, 0x05, 0x40, 0x44, 0x00, 0x00]);
    }

    #[test]
    fn gates_point_at_their_stubs() {
        let (idt, stubs) = idt_and_stubs(0x400);
        assert_eq!(idt.len(), 32 * 8);
        assert_eq!(stubs.len(), 32 * 16);
        // Vector 13 (#GP): offset 0x400 + 13 * 16 = 0x4d0.
        let g = &idt[13 * 8..14 * 8];
        assert_eq!(u16::from_le_bytes([g[0], g[1]]), 0x04d0);
        assert_eq!(u16::from_le_bytes([g[2], g[3]]), CODE_SELECTOR);
        assert_eq!(g[5], 0x8e);
        // The stub loads its vector into eax first.
        assert_eq!(&stubs[13 * 16..13 * 16 + 5], [0xb8, 13, 0, 0, 0]);
        assert_eq!(vector_name(13), "#GP");
        assert_eq!(vector_name(6), "#UD");
    }
}

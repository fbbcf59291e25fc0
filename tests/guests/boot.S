/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * PVH entry, long-mode switch, AP trampoline, interrupt stubs and the
 * drop to user mode. Kernel mode is emulated instruction by instruction
 * on kvm_pvm, so everything here is as short as possible: the page tables
 * and GDT are built by the assembler, not at run time.
 */
#include "layout.h"

#define TR(x) x - tramp_start + TRAMP_BASE

/* XEN_ELFNOTE_PHYS32_ENTRY: 8-byte desc like Linux's ELF64 kernels. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4, 8, 18
	.asciz "Xen"
	.balign 4
	.quad pvh_start32
	.balign 4

/* ---- BSP entry: 32-bit protected mode, paging off, EBX = start_info ---- */
	.section .boot, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	movl %ebx, pvh_start_info
	lgdt gdt_ptr
	movw $KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx		/* EFER.LME */
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	ljmp $KCODE64, $start64

/* ---- AP trampoline, copied to TRAMP_BASE; SIPI enters at CS=0x800 ---- */
	.section .rodata.tramp, "a"
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl TR(tramp_gdtr)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $KCODE32, $TR(tramp32)
	.code32
tramp32:
	movw $KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl %cr4, %eax
	orl $0x20, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax
	movl %eax, %cr0
	ljmp $KCODE64, $ap_start64
	.balign 8
tramp_gdtr:
	.word gdt_end - gdt - 1
	.long gdt
tramp_end:

	.text
	.code64
start64:
	movl $KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movq $bsp_kstack_top, %rsp
	movl pvh_start_info(%rip), %edi
	call kmain
1:	hlt
	jmp 1b

ap_start64:
	movl $KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $1, %eax
	lock xaddl %eax, ap_ticket(%rip)
	cmpl $(GUEST_MAX_CPUS - 1), %eax
	jae 2f				/* more CPUs than stacks: park */
	movl %eax, %edi
	leal 1(%rax), %edx
	shll $AP_KSTACK_SHIFT, %edx
	addq $ap_kstacks, %rdx
	movq %rdx, %rsp
	call ap_main
2:	cli
	hlt
	jmp 2b

/* void enter_user(void (*fn)(unsigned long), void *ustack_top, arg) */
	.globl enter_user
enter_user:
	pushq $UDATA			/* SS */
	leaq -8(%rsi), %rsi		/* as if fn had been called */
	pushq %rsi			/* RSP */
	pushq $0x3002			/* RFLAGS: IOPL=3, IF=0 */
	pushq $UCODE64			/* CS */
	pushq %rdi			/* RIP */
	movq %rdx, %rdi
	iretq

/* Empty IDT, then fault: nothing can deliver #UD/#DF, so the CPU resets. */
	.globl triple_fault
triple_fault:
	lidt empty_idt
	movabsq $0x8000000000000000, %rax
	movq (%rax), %rax		/* non-canonical: #GP */
	ud2
	jmp triple_fault

/* ---- interrupts: timer stubs are tiny because each insn is emulated ---- */
	.globl irq_pit, irq_lapic, irq_spurious, irq_other
irq_pit:
	pushq %rax
	incq pit_ticks(%rip)
	movq lapic_eoi_ptr(%rip), %rax
	movl $0, (%rax)
	popq %rax
	iretq
irq_lapic:
	pushq %rax
	incq lapic_ticks(%rip)
	movq lapic_eoi_ptr(%rip), %rax
	movl $0, (%rax)
	popq %rax
	iretq
irq_other:
	pushq %rax
	incq other_irqs(%rip)
	movq lapic_eoi_ptr(%rip), %rax
	movl $0, (%rax)
	popq %rax
	iretq
irq_spurious:
	iretq

	.macro EXC n, err
exc_\n:
	.if \err == 0
	pushq $0
	.endif
	pushq $\n
	jmp exc_common
	.endm

	.irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
	EXC \n, 0
	.endr
	.irp n, 8,10,11,12,13,14,17,21,29,30
	EXC \n, 1
	.endr

exc_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	call exc_handler
3:	cli
	hlt
	jmp 3b

	.section .rodata
	.balign 8
	.globl exc_vectors
exc_vectors:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc_\n
	.endr

/* ---- data: identity map of the low 4 GiB, 2 MiB pages, user-accessible */
	.data
	.balign 4096
	.globl pml4, pdpt
pml4:
	.quad pdpt + 0x7
	.fill 511, 8, 0
pdpt:
	.quad pd_low + 0x7, pd_low + 0x1007, pd_low + 0x2007, pd_low + 0x3007
	.fill 508, 8, 0
pd_low:
	/* P|RW|US|PS; the 3-4 GiB MMIO hole uncached (PCD|PWT) */
	.set i, 0
	.rept 2048
	.quad (i << 21) | 0x87 | ((i >= 1536) & 0x18)
	.set i, i + 1
	.endr

	.balign 16
	.globl gdt, gdt_end
gdt:
	.quad 0
	.quad 0x00209a0000000000	/* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00cf9a000000ffff	/* 0x18 kernel code, 32-bit (APs) */
	.quad 0x00cff2000000ffff	/* 0x20 user data */
	.quad 0x0020fa0000000000	/* 0x28 user code, 64-bit */
	.fill 2 * GUEST_MAX_CPUS, 8, 0	/* 0x30: one TSS per CPU (kern.c) */
gdt_end:
	.balign 8
	.word 0
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt
	.word 0
empty_idt:
	.word 0
	.quad 0

	.globl pvh_start_info
pvh_start_info:
	.long 0

	.bss
	.balign 4096
	.globl ap_kstacks
ap_kstacks:
	.skip AP_KSTACK_SZ * GUEST_MAX_CPUS
bsp_kstack:
	.skip 16384
bsp_kstack_top:

	.section .note.GNU-stack, "", @progbits

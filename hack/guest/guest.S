/*
 * virtmigrate test guest: a tiny 32-bit multiboot kernel (GNU as, AT&T syntax).
 *
 * Booted by QEMU through <os><kernel> with a <cmdline>. On boot it fills all RAM above
 * its own image with pseudo-random data (xorshift32), then, by the kernel command line:
 *   mode=idle     (default) halts between timer ticks and prints "heartbeat N" on COM1
 *                 once a second;
 *   mode=rewrite  keeps rewriting all of RAM with fresh pseudo-random data, printing
 *                 "heartbeat N pass P" once a second between pages.
 * The PIT ticks at 20 Hz; the heartbeat counter lives in guest RAM, so it survives a
 * live migration and continues where it left off on the destination.
 * Consumed by hack/build-guest.sh and virtmigrate/local/guest.py (domain XML).
 */

    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x00000003            /* page-align modules, give memory info */
    .set COM1, 0x3F8
    .set TICKS_PER_SEC, 20
    .set PIT_DIVISOR, 59659              /* 1193182 Hz / 20 */

    .section .multiboot
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .data
    .align 8
gdt:
    .quad 0x0000000000000000
    .quad 0x00CF9A000000FFFF             /* 0x08: flat 32-bit code */
    .quad 0x00CF92000000FFFF             /* 0x10: flat 32-bit data */
gdt_end:
gdtr:
    .word gdt_end - gdt - 1
    .long gdt
idtr:
    .word 256*8 - 1
    .long idt
msg_boot:    .asciz "virtmigrate-guest booting mem_kib="
msg_filled:  .asciz "filled ram mode="
msg_idle:    .asciz "idle\n"
msg_rewrite: .asciz "rewrite\n"
msg_hb:      .asciz "heartbeat "
msg_pass:    .asciz " pass "
msg_nl:      .asciz "\n"
pat_rewrite: .asciz "mode=rewrite"

    .section .bss
    .align 16
idt:        .skip 256*8
stack_bottom: .skip 16384
stack_top:
ticks:      .long 0
beats:      .long 0
passes:     .long 0
mem_top:    .long 0
mode:       .long 0                      /* 0 idle, 1 rewrite */
seed:       .long 0
numbuf:     .skip 16

    .section .text
    .global _start
_start:
    cli
    mov $stack_top, %esp
    cmp $0x2BADB002, %eax
    jne .Lhang
    /* ebx = multiboot info. mem_upper (KiB above 1 MiB) at +8 when flags bit 0. */
    mov 8(%ebx), %eax
    shl $10, %eax
    add $0x100000, %eax
    and $0xFFFFF000, %eax
    mov %eax, mem_top
    /* cmdline (flags bit 2) at +16: look for "mode=rewrite". */
    testl $4, (%ebx)
    jz 1f
    mov 16(%ebx), %esi
    call find_rewrite
    mov %eax, mode
1:
    lgdt gdtr
    ljmp $0x08, $2f
2:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs

    call serial_init
    mov $msg_boot, %esi
    call puts
    mov mem_top, %eax
    sub $0x100000, %eax
    shr $10, %eax
    add $1024, %eax
    call putnum
    mov $msg_nl, %esi
    call puts

    call idt_init
    call pic_init
    call pit_init

    movl $0x9E3779B9, seed
    call fill_ram
    mov $msg_filled, %esi
    call puts
    mov $msg_idle, %esi
    cmpl $0, mode
    je 3f
    mov $msg_rewrite, %esi
3:  call puts
    movl $0, ticks
    sti
    cmpl $0, mode
    jne rewrite_loop

idle_loop:
    hlt
    call maybe_heartbeat
    jmp idle_loop

rewrite_loop:
    call fill_ram_beating
    incl passes
    jmp rewrite_loop

.Lhang:
    cli
    hlt
    jmp .Lhang

/* eax <- 1 if the NUL-terminated string at esi contains "mode=rewrite". */
find_rewrite:
    push %esi
.Lfr_outer:
    cmpb $0, (%esi)
    je .Lfr_no
    mov %esi, %edi
    mov $pat_rewrite, %edx
.Lfr_inner:
    movb (%edx), %al
    test %al, %al
    je .Lfr_yes
    cmpb (%edi), %al
    jne .Lfr_next
    inc %edi
    inc %edx
    jmp .Lfr_inner
.Lfr_next:
    inc %esi
    jmp .Lfr_outer
.Lfr_yes:
    mov $1, %eax
    pop %esi
    ret
.Lfr_no:
    xor %eax, %eax
    pop %esi
    ret

/* Fill [_end, mem_top) with xorshift32 words. */
fill_ram:
    mov $_end, %edi
    mov mem_top, %ecx
    mov seed, %eax
.Lfill:
    cmp %ecx, %edi
    jae .Lfill_done
    mov %eax, %edx
    shl $13, %edx
    xor %edx, %eax
    mov %eax, %edx
    shr $17, %edx
    xor %edx, %eax
    mov %eax, %edx
    shl $5, %edx
    xor %edx, %eax
    mov %eax, (%edi)
    add $4, %edi
    jmp .Lfill
.Lfill_done:
    mov %eax, seed
    ret

/* Same as fill_ram, checking for a due heartbeat after every 4 KiB page. */
fill_ram_beating:
    mov $_end, %edi
.Lfb_page:
    cmp mem_top, %edi
    jae .Lfb_done
    mov seed, %eax
    mov $1024, %ecx
.Lfb_word:
    mov %eax, %edx
    shl $13, %edx
    xor %edx, %eax
    mov %eax, %edx
    shr $17, %edx
    xor %edx, %eax
    mov %eax, %edx
    shl $5, %edx
    xor %edx, %eax
    mov %eax, (%edi)
    add $4, %edi
    dec %ecx
    jnz .Lfb_word
    mov %eax, seed
    push %edi
    call maybe_heartbeat
    pop %edi
    jmp .Lfb_page
.Lfb_done:
    ret

/* Print "heartbeat N[ pass P]" when a second's worth of ticks has passed. */
maybe_heartbeat:
    cmpl $TICKS_PER_SEC, ticks
    jb .Lmh_ret
    cli
    subl $TICKS_PER_SEC, ticks
    sti
    incl beats
    mov $msg_hb, %esi
    call puts
    mov beats, %eax
    call putnum
    cmpl $0, mode
    je 1f
    mov $msg_pass, %esi
    call puts
    mov passes, %eax
    call putnum
1:  mov $msg_nl, %esi
    call puts
.Lmh_ret:
    ret

serial_init:
    mov $COM1+1, %dx
    mov $0x00, %al          /* no UART interrupts */
    out %al, %dx
    mov $COM1+3, %dx
    mov $0x80, %al          /* DLAB */
    out %al, %dx
    mov $COM1+0, %dx
    mov $0x01, %al          /* 115200 baud */
    out %al, %dx
    mov $COM1+1, %dx
    mov $0x00, %al
    out %al, %dx
    mov $COM1+3, %dx
    mov $0x03, %al          /* 8N1 */
    out %al, %dx
    mov $COM1+2, %dx
    mov $0xC7, %al          /* FIFO */
    out %al, %dx
    ret

/* Write the NUL-terminated string at esi to COM1. Clobbers eax, edx, esi. */
puts:
    movb (%esi), %al
    test %al, %al
    jz .Lputs_done
    call putc
    inc %esi
    jmp puts
.Lputs_done:
    ret

putc:
    push %eax
    mov $COM1+5, %dx
.Lputc_wait:
    in %dx, %al
    test $0x20, %al
    jz .Lputc_wait
    pop %eax
    mov $COM1, %dx
    out %al, %dx
    ret

/* Print eax in decimal. Clobbers eax, ecx, edx, esi, edi. */
putnum:
    mov $numbuf+15, %edi
    movb $0, (%edi)
    mov $10, %ecx
1:  xor %edx, %edx
    div %ecx
    add $'0', %dl
    dec %edi
    mov %dl, (%edi)
    test %eax, %eax
    jnz 1b
    mov %edi, %esi
    jmp puts

/* Every vector -> ignore_isr, except 0x20 (IRQ0, the PIT) -> timer_isr. */
idt_init:
    mov $idt, %edi
    xor %ecx, %ecx
1:  mov $ignore_isr, %eax
    cmp $0x20, %ecx
    jne 2f
    mov $timer_isr, %eax
2:  mov %ax, (%edi)
    movw $0x08, 2(%edi)
    movw $0x8E00, 4(%edi)        /* present, ring 0, 32-bit interrupt gate */
    shr $16, %eax
    mov %ax, 6(%edi)
    add $8, %edi
    inc %ecx
    cmp $256, %ecx
    jne 1b
    lidt idtr
    ret

/* Remap the PICs to 0x20/0x28 and unmask only IRQ0. */
pic_init:
    mov $0x11, %al
    out %al, $0x20
    out %al, $0xA0
    mov $0x20, %al
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xA1
    mov $0x04, %al
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xA1
    mov $0x01, %al
    out %al, $0x21
    out %al, $0xA1
    mov $0xFE, %al
    out %al, $0x21
    mov $0xFF, %al
    out %al, $0xA1
    ret

pit_init:
    mov $0x34, %al               /* channel 0, lobyte/hibyte, rate generator */
    out %al, $0x43
    mov $(PIT_DIVISOR & 0xFF), %al
    out %al, $0x40
    mov $(PIT_DIVISOR >> 8), %al
    out %al, $0x40
    ret

timer_isr:
    push %eax
    incl ticks
    mov $0x20, %al
    out %al, $0x20
    pop %eax
    iret

ignore_isr:
    iret

#!/usr/bin/env bash
# Regenerates the seed corpora: small real disk images (Debian's e2fsprogs, dosfstools + mtools, xorriso,
# fdisk) and real-looking boot configs. Run from anywhere; writes into corpus/.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p corpus/boot_config corpus/disk_image corpus/report
t=$tmp/tree
mkdir -p $t/boot/grub $t/boot/extlinux $t/isolinux
printf 'KERNEL' > $t/boot/vmlinuz
printf 'INITRD' > $t/boot/initrd.img
cat > $t/boot/grub/grub.cfg <<'CFG'
set default="${saved_entry}"
load_env
menuentry 'A' --id a { linux /boot/vmlinuz root=/dev/xvda1 probe=hello; initrd /boot/initrd.img }
submenu 'S' { menuentry 'B' { linux /boot/vmlinuz single } }
CFG
printf '# GRUB Environment Block\nsaved_entry=S>B\n' > $t/boot/grub/grubenv
printf 'default 0\ntitle L\n kernel /boot/vmlinuz ro\n initrd /boot/initrd.img\n' > $t/boot/grub/menu.lst
printf 'DEFAULT x\nLABEL x\n KERNEL ../vmlinuz\n APPEND initrd=../initrd.img quiet\n' > $t/boot/extlinux/extlinux.conf
cp $t/boot/extlinux/extlinux.conf $t/isolinux/isolinux.cfg
mkfs.ext2 -q -F -N 32 -d $t $tmp/ext2.img 128K
mkfs.ext4 -q -F -N 32 -d $t $tmp/ext4.img 256K
mkfs.vfat -C $tmp/fat.img 200 >/dev/null
for e in $t/*; do MTOOLS_SKIP_CHECK=1 mcopy -s -i $tmp/fat.img "$e" ::/; done
xorriso -as mkisofs -quiet -R -o $tmp/cd.iso $t
# Partitioned disks: the ext2 image in partition 1 (MBR) / 1 (GPT).
for label in dos gpt; do
    truncate -s 300K $tmp/$label.img
    if [ $label = dos ]; then printf 'label: dos\nstart=64, size=256, bootable\n'; else printf 'label: gpt\nstart=64, size=256, name=boot\n'; fi \
        | sfdisk -q $tmp/$label.img
    dd if=$tmp/ext2.img of=$tmp/$label.img bs=512 seek=64 conv=notrunc status=none
done
for f in ext2.img ext4.img fat.img cd.iso dos.img gpt.img; do cp $tmp/$f corpus/disk_image/$f; done
cp $t/boot/grub/grub.cfg corpus/boot_config/grub.cfg
{ cat $t/boot/grub/grub.cfg; printf '\0'; cat $t/boot/grub/grubenv; } > corpus/boot_config/grub-env
cp $t/boot/grub/menu.lst corpus/boot_config/menu.lst
cp $t/boot/extlinux/extlinux.conf corpus/boot_config/extlinux.conf
# Reports as the child writes them (see src/protocol.rs): a full one and an error.
python3 - <<'PY'
import struct
def rec(tag, data):
    return struct.pack('<BQ', tag, len(data)) + data
full = b'DOMUSBL1' + rec(8, b'a warning') + rec(3, b'MBR partition 1') + rec(4, b'/boot/grub/grub.cfg') \
    + rec(1, b'Debian') + rec(2, b'1>0') + rec(5, b'/boot/vmlinuz') + rec(7, b'root=/dev/xvda1 probe=hello') \
    + rec(10, b'KERNEL' * 10) + rec(6, b'/boot/initrd.img') + rec(11, b'RAMDISK') + rec(0, b'')
open('corpus/report/full', 'wb').write(full)
open('corpus/report/error', 'wb').write(b'DOMUSBL1' + rec(9, b'no boot configuration found') + rec(0, b''))
PY

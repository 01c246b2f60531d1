#!/usr/bin/env bash
# Builds the boot media of the real-VM test (tests/tests/real_vm.rs, tests/src/realvm/):
#
#   tests/realvm/build.sh OUT_DIR MOORING_CLIENT
#
# OUT_DIR/debs    Debian's kernel (the dependency of linux-image-amd64), shim-signed and
#                 grub-efi-amd64-signed, fetched once with `apt-get download` (kept across
#                 runs; delete the directory to fetch newer ones). Nothing is installed.
# OUT_DIR/images  rebuilt on every run from those and the given (release) client:
#   initrd.img            busybox, tests/realvm/init, mooring-client and the libraries it
#                         loads, the e1000 and qemu_fw_cfg modules (reproducible cpio)
#   vmlinuz               Debian's kernel as shipped (signed by Debian, for shim)
#   disk-systemd-boot.img systemd-boot -> kernel, both signed with OVMF's snakeoil key
#   disk-shim-grub.img    Debian shim -> Debian grub -> Debian kernel
#   disk-uki.img          a unified kernel image (systemd's stub) as \EFI\BOOT\BOOTX64.EFI,
#                         signed with the snakeoil key
#   cmdline-<chain>.txt   the kernel command line configured for each chain (no newline)
#
# Every disk has the same GPT (fixed disk and partition GUIDs, same size), so that the
# GPT event in PCR 5 is the same whichever loader the disk holds. Timestamps are fixed
# (SOURCE_DATE_EPOCH) so the same inputs give the same bytes. Per-run values (the broker's
# address and CA) are not in these images: the VM reads them through fw_cfg.
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 OUT_DIR MOORING_CLIENT" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
# mkfs.vfat and sfdisk live in sbin, which a user's PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
out=$(realpath -m "$1")
client=$(realpath "$2")

export SOURCE_DATE_EPOCH=946684800 # 2000-01-01: FAT cannot store 1970
export LC_ALL=C
stamp="@$SOURCE_DATE_EPOCH"

# The kernel command line of each chain. The UKI's is in its .cmdline section.
cmdline="console=ttyS0 quiet"
cmdline_uki="console=ttyS0 quiet mooring.chain=uki"

snakeoil_key=/usr/share/ovmf/PkKek-1-snakeoil.key
snakeoil_cert=/usr/share/ovmf/PkKek-1-snakeoil.pem
systemd_boot=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
efi_stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub

disk_id=4D4F4F52-494E-4700-8000-000000000001
esp_id=4D4F4F52-494E-4700-8000-000000000002
fat_id=4d4f4f52
esp_mib=96

# Runs a command quietly; shows its output only when it fails.
quiet() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    echo "build.sh: failed: $*" >&2
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

fetch_packages() {
  local debs=$out/debs
  [ -f "$debs/.complete" ] && return 0
  local kernel
  kernel=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
  if [ -z "$kernel" ]; then
    echo "build.sh: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2
    return 1
  fi
  rm -rf "$debs.tmp"
  mkdir -p "$debs.tmp"
  # apt-get download writes into the current directory.
  (cd "$debs.tmp" && quiet apt-get download "$kernel" shim-signed grub-efi-amd64-signed)
  touch "$debs.tmp/.complete"
  rm -rf "$debs"
  mv "$debs.tmp" "$debs"
}

extract_packages() {
  rm -rf "$out/root"
  mkdir -p "$out/root"
  local deb
  for deb in "$out"/debs/*.deb; do
    dpkg-deb -x "$deb" "$out/root"
  done
}

# Copies a file to the same absolute path below a directory, following symlinks.
copy_to() {
  local dest=$1 file=$2
  mkdir -p "$dest$(dirname "$file")"
  cp -L "$file" "$dest$file"
}

build_initrd() {
  if ldd /bin/busybox >/dev/null 2>&1; then
    echo "build.sh: /bin/busybox is dynamically linked; the initramfs needs busybox-static" >&2
    return 1
  fi
  local stage=$work/initramfs
  rm -rf "$stage"
  mkdir -p "$stage"/{bin,dev,proc,sys,run,tmp,etc,var/lib,lib/modules}
  cp /bin/busybox "$stage/bin/busybox"
  cp "$here/init" "$stage/init"
  # Release builds keep debug information (tens of MB): not needed in the VM.
  strip -o "$stage/bin/mooring-client" "$client"
  chmod 0755 "$stage/init" "$stage/bin/busybox" "$stage/bin/mooring-client"

  # The libraries the client links, plus the TCTI tctildr opens at run time.
  # All in /lib/x86_64-linux-gnu (init sets LD_LIBRARY_PATH), the loader at its own path.
  local tcti=/usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0 libdir=$stage/lib/x86_64-linux-gnu lib
  mkdir -p "$libdir"
  cp -L "$tcti" "$libdir/"
  for lib in $( (ldd "$client" && ldd "$tcti") | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u); do
    cp -L "$lib" "$libdir/"
  done
  copy_to "$stage" /lib64/ld-linux-x86-64.so.2

  local module
  for module in drivers/net/ethernet/intel/e1000/e1000.ko drivers/firmware/qemu_fw_cfg.ko; do
    cp "$modules/kernel/$module" "$stage/lib/modules/"
  done

  find "$stage" -exec touch -h -d "$stamp" {} +
  (cd "$stage" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --reproducible --quiet) \
    | gzip -n -6 >"$images/initrd.img"
}

# sign INPUT OUTPUT: signs with the snakeoil db key. sbsign puts the signing time into the
# signature (not into the Authenticode digest the firmware measures), so signed files are
# kept by the input's digest and reused: the same input gives the same bytes.
sign() {
  local input=$1 output=$2 kept
  kept=$out/signed/$(sha256sum "$input" | cut -d' ' -f1).efi
  if [ ! -f "$kept" ]; then
    mkdir -p "$out/signed"
    quiet sbsign --key "$work/snakeoil.key" --cert "$snakeoil_cert" --output "$kept.tmp" "$input"
    mv "$kept.tmp" "$kept"
  fi
  touch "$kept" # still in use: not pruned below
  cp "$kept" "$output"
}

# Zeroes a PE file's COFF TimeDateStamp (4 bytes at e_lfanew + 8) and the optional header's
# CheckSum computed over it (e_lfanew + 24 + 64; firmware does not check it, and Authenticode
# leaves it out): objcopy stamps the time of the build.
zero_coff_timestamp() {
  local file=$1 lfanew offset
  lfanew=$(od -An -tu4 -j 60 -N 4 "$file" | tr -d ' ')
  for offset in $((lfanew + 8)) $((lfanew + 88)); do
    printf '\0\0\0\0' | dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
  done
}

# The first address past the last section of a PE file, rounded up to 4 KiB.
align_up() {
  echo $((($1 + 4095) / 4096 * 4096))
}

build_uki() {
  local uki=$1 osrel=$work/os-release cmdfile=$work/cmdline-uki
  printf 'ID=mooring-test\nNAME="Mooring real-VM test"\n' >"$osrel"
  printf '%s' "$cmdline_uki" >"$cmdfile"
  local end
  # The end of the stub's last section: VMA + size, from objdump's section table.
  end=$(objdump -h "$efi_stub" | awk 'NF == 7 && $1 ~ /^[0-9]+$/ { print $3, $4 }' | while read -r size vma; do
    echo $((16#$vma + 16#$size))
  done | sort -n | tail -n 1)
  local osrel_at cmdline_at linux_at initrd_at
  osrel_at=$(align_up "$end")
  cmdline_at=$(align_up $((osrel_at + $(stat -c %s "$osrel"))))
  linux_at=$(align_up $((cmdline_at + $(stat -c %s "$cmdfile"))))
  initrd_at=$(align_up $((linux_at + $(stat -c %s "$kernel"))))
  objcopy \
    --add-section .osrel="$osrel" --change-section-vma .osrel="$(printf 0x%x "$osrel_at")" \
    --add-section .cmdline="$cmdfile" --change-section-vma .cmdline="$(printf 0x%x "$cmdline_at")" \
    --add-section .linux="$kernel" --change-section-vma .linux="$(printf 0x%x "$linux_at")" \
    --add-section .initrd="$images/initrd.img" --change-section-vma .initrd="$(printf 0x%x "$initrd_at")" \
    "$efi_stub" "$work/uki.unsigned.efi"
  zero_coff_timestamp "$work/uki.unsigned.efi"
  sign "$work/uki.unsigned.efi" "$uki"
}

# make_disk IMAGE SRC:DEST... : a GPT disk whose one partition is a FAT ESP holding the
# given files (DEST is the path on the ESP, forward slashes).
make_disk() {
  local image=$1
  shift
  local esp=$work/esp.img
  rm -f "$esp" "$image"
  quiet mkfs.vfat -C -i "$fat_id" --invariant -n MOORING "$esp" $((esp_mib * 1024))
  local spec src dest dir
  for spec in "$@"; do
    src=${spec%%:*}
    dest=${spec#*:}
    dir=$(dirname "$dest")
    if [ "$dir" != / ]; then
      # mmd fails on existing directories: create each level once.
      local path="" part
      local IFS=/
      for part in ${dir#/}; do
        path="$path/$part"
        mdir -i "$esp" "::$path" >/dev/null 2>&1 || quiet mmd -i "$esp" "::$path"
      done
      unset IFS
    fi
    touch -d "$stamp" "$src"
    quiet mcopy -m -i "$esp" "$src" "::$dest"
  done
  truncate -s $(((esp_mib + 2) * 1024 * 1024)) "$image"
  quiet sfdisk --no-reread --no-tell-kernel "$image" <<EOF
label: gpt
label-id: $disk_id
first-lba: 2048
start=2048, size=$((esp_mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$esp_id, name="ESP"
EOF
  dd if="$esp" of="$image" bs=1M seek=1 conv=notrunc status=none
  rm -f "$esp"
}

fetch_packages
extract_packages
work=$out/work
images=$out/images
rm -rf "$work" "$images"
mkdir -p "$work" "$images"
touch "$work/started"
kernel=$(find "$out/root/boot" -name 'vmlinuz-*' | head -n 1)
modules=$(find "$out/root/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)
openssl rsa -in "$snakeoil_key" -passin pass:snakeoil -out "$work/snakeoil.key" 2>/dev/null

build_initrd
cp "$kernel" "$images/vmlinuz"
printf '%s' "$cmdline" >"$images/cmdline-systemd-boot.txt"
printf '%s' "$cmdline" >"$images/cmdline-shim-grub.txt"
printf '%s' "$cmdline" >"$images/cmdline-kernel.txt"
printf '%s' "$cmdline_uki" >"$images/cmdline-uki.txt"

# (a) systemd-boot -> kernel: loader and kernel signed with the snakeoil db key.
sign "$systemd_boot" "$work/systemd-bootx64.efi"
sign "$kernel" "$work/vmlinuz.snakeoil"
printf 'default mooring.conf\ntimeout 0\neditor no\n' >"$work/loader.conf"
printf 'title Mooring real-VM test\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$cmdline" >"$work/mooring.conf"
make_disk "$images/disk-systemd-boot.img" \
  "$work/systemd-bootx64.efi:/EFI/BOOT/BOOTX64.EFI" \
  "$work/loader.conf:/loader/loader.conf" \
  "$work/mooring.conf:/loader/entries/mooring.conf" \
  "$work/vmlinuz.snakeoil:/vmlinuz" \
  "$images/initrd.img:/initrd.img"

# (b) Debian shim -> grub -> kernel, all as Debian signed them. Shim as the removable-media
# loader starts grubx64.efi beside it; Debian's grub reads $prefix/grub.cfg, /EFI/debian.
cp "$out/root/usr/lib/shim/shimx64.efi.signed" "$work/shimx64.efi"
cp "$out/root/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" "$work/grubx64.efi"
printf 'set timeout=0\nlinux /vmlinuz %s\ninitrd /initrd.img\nboot\n' "$cmdline" >"$work/grub.cfg"
cp "$kernel" "$work/vmlinuz.debian"
make_disk "$images/disk-shim-grub.img" \
  "$work/shimx64.efi:/EFI/BOOT/BOOTX64.EFI" \
  "$work/grubx64.efi:/EFI/BOOT/grubx64.efi" \
  "$work/grub.cfg:/EFI/debian/grub.cfg" \
  "$work/vmlinuz.debian:/vmlinuz" \
  "$images/initrd.img:/initrd.img"

# (d) the UKI as the removable-media loader.
build_uki "$work/uki.efi"
make_disk "$images/disk-uki.img" "$work/uki.efi:/EFI/BOOT/BOOTX64.EFI"

# Signatures of inputs this run did not use (an older client's UKI) are dropped.
find "$out/signed" -type f ! -newer "$work/started" -delete
rm -rf "$work"
echo "build.sh: images in $images"

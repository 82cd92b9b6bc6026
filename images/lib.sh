# Shared steps of the images' rootfs.sh scripts (sourced, never run).
# Every script gets: $1 the root filesystem to fill (an empty directory),
# SOURCE_DATE_EPOCH, and IMAGES_CACHE (downloads kept between builds).

# debs_into ROOT PACKAGE...: unpack Debian packages (and nothing they depend
# on) into ROOT without running their scripts, recording each in
# var/lib/dpkg/status.d/ so the SBOM lists it. For images without dpkg.
debs_into() {
  local root=$1; shift
  local dir="$IMAGES_CACHE/debs"
  mkdir -p "$dir" "$root/var/lib/dpkg/status.d"
  (cd "$dir" && apt-get download -q=2 -o APT::Sandbox::User=root "$@" >/dev/null) || {
    echo "images: apt-get download $* failed (run apt-get update?)" >&2; return 1; }
  local p deb
  for p in "$@"; do
    deb=$(ls -t "$dir/${p}_"*.deb | head -1)
    dpkg-deb -x "$deb" "$root"
    dpkg-deb -f "$deb" Package Version Architecture Source >"$root/var/lib/dpkg/status.d/$p"
  done
}

# distroless ROOT UID NAME: the C library, CA certificates and one non-root
# user; no shell, no package manager.
distroless() {
  local root=$1 uid=$2 name=$3
  debs_into "$root" libc6 libgcc-s1 gcc-12-base ca-certificates
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/$name"
  # What update-ca-certificates would write: the bundle of every Mozilla root.
  LC_ALL=C cat "$root"/usr/share/ca-certificates/mozilla/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
  # The C library's programs, locales, iconv modules and documents: unused.
  rm -rf "$root"/usr/bin "$root"/usr/sbin "$root"/sbin "$root"/usr/libexec "$root"/usr/share \
    "$root"/usr/lib/x86_64-linux-gnu/gconv "$root"/lib/x86_64-linux-gnu/gconv "$root"/etc/ld.so.conf.d \
    "$root"/usr/sbin "$root"/var/lib/dpkg/info
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\n%s:x:%s:%s::/home/%s:/sbin/nologin\n' "$name" "$uid" "$uid" "$name" >"$root/etc/passwd"
  printf 'root:x:0:\n%s:x:%s:\n' "$name" "$uid" >"$root/etc/group"
  chown "$uid:$uid" "$root/home/$name"
  chmod 0700 "$root/home/$name"
}

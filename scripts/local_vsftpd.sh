# Sourced by scripts/bench.sh and scripts/soak.sh: a vsftpd of their own on 127.0.0.1.
#
#   local_vsftpd CONF ROOT PORT PASV_LO PASV_HI USER PASS
#
# Makes USER (with a real home: vsftpd changes into it before local_root) with password PASS,
# gives it ROOT, and writes a configuration to CONF serving ROOT as USER's chroot on PORT with
# passive ports PASV_LO-PASV_HI. The caller starts `/usr/sbin/vsftpd CONF`.
local_vsftpd() {
    local conf=$1 root=$2 port=$3 pasv_lo=$4 pasv_hi=$5 user=$6 pass=$7
    local home=/home/$user cur
    id "$user" >/dev/null 2>&1 || useradd -M -d "$home" -s /bin/bash "$user"
    cur=$(getent passwd "$user" | cut -d: -f6)
    if [ -z "$cur" ] || [ "$cur" = /nonexistent ]; then usermod -d "$home" "$user"; cur=$home; fi
    if [ "$cur" = "$home" ] || [ ! -d "$cur" ]; then
        mkdir -p "$cur"; chown "$user:$(id -gn "$user")" "$cur"; chmod 755 "$cur"
    fi
    echo "$user:$pass" | chpasswd
    chown -R "$user" "$root"
    mkdir -p /var/run/vsftpd/empty
    cat > "$conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
allow_writeable_chroot=YES
local_root=$root
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
pasv_min_port=$pasv_lo
pasv_max_port=$pasv_hi
pasv_address=127.0.0.1
connect_from_port_20=NO
secure_chroot_dir=/var/run/vsftpd/empty
pam_service_name=vsftpd
use_localtime=NO
xferlog_enable=NO
max_clients=200
max_per_ip=200
EOF
}

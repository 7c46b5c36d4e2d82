# hotbackup .rpm %postun: $1 = 0 after removal. RPM has no purge: data in /var/lib/hotbackup and
# the instance configs and keys in /etc/hotbackup stay (remove them by hand if wanted), as the
# .deb keeps them on remove.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi

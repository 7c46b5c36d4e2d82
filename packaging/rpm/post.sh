# hotbackup .rpm %post: $1 = 1 on install, 2 on upgrade (see debian/postinst).
if [ "$1" -ge 2 ]; then
    /usr/lib/hotbackup/hotbackup-package upgrade
else
    /usr/lib/hotbackup/hotbackup-package install
fi

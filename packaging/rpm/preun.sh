# hotbackup .rpm %preun: $1 = 0 on removal (stop every instance), 1 on upgrade (nothing).
if [ "$1" -eq 0 ]; then
    /usr/lib/hotbackup/hotbackup-package stop
fi

#!/bin/busybox sh
# /init of the arm64 test guest (scripts/arm64-guest.sh puts it in the initramfs): loads the
# drivers, brings up qemu's user-mode network (guest 10.0.2.15, host 10.0.2.2), mounts the data disk
# when there is one, and runs the handler with the environment the launcher wrote to /guest.env.
# When the handler exits, the machine powers off (qemu exits) after printing the exit status.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r module; do
  insmod "/modules/$module" || echo "arm64-guest: insmod $module failed"
done </modules/order

ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2

. /guest.env
if [ -b /dev/vda ]; then
  mount -t ext4 -o data=ordered /dev/vda /data || { echo "arm64-guest: cannot mount the data disk"; poweroff -f; }
fi

# Under the Functions host the handler listens on 127.0.0.1 only: relay the forwarded port to it.
if [ -n "$FUNCTIONS_CUSTOMHANDLER_PORT" ]; then
  # -ll: keep listening, one relay process per connection.
  nc -ll -p 8080 -e nc 127.0.0.1 "$FUNCTIONS_CUSTOMHANDLER_PORT" &
fi

# shellcheck disable=SC2086 # GUEST_ARGS is the launcher's argument list, split on purpose.
/bin/handler $GUEST_ARGS
status=$?
echo "arm64-guest: handler exited with status $status"
sync
poweroff -f

# The app: count the boots this instance's volume has seen, fill in the page, serve it.
echo boot >> /data/boots
boots=$(busybox wc -l < /data/boots)
busybox sed -i -e "s|{{greeting}}|$GREETING|" -e "s|{{boots}}|$boots|" /www/index.html
echo "hello: serving /www on port 8080 (boot $boots of this volume)"
exec busybox httpd -f -p '[::]:8080' -h /www

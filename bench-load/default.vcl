# Varnish as a cache in front of bench-load's origin. run.sh fills in @ORIGIN_PORT@ and
# starts varnishd -a 127.0.0.1:PORT -f THIS_FILE -s malloc,256m -n TMPDIR -F.
# The built-in VCL does the rest: GET/HEAD cached by the origin's Cache-Control
# (public, max-age=3600), conditional requests answered from the cache, concurrent misses
# for one object coalesced on the waiting list.
vcl 4.1;

backend origin {
    .host = "127.0.0.1";
    .port = "@ORIGIN_PORT@";
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "hit";
    } else {
        set resp.http.X-Cache = "miss";
    }
}

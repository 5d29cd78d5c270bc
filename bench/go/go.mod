module mapcache/bench/go

go 1.19

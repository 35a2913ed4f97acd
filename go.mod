module github.com/fluxcapacitor/flux

go 1.26.0

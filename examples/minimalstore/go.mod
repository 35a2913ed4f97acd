module github.com/fluxcapacitor/flux/examples/minimalstore

go 1.26.0

require github.com/fluxcapacitor/flux v0.1.0

require golang.org/x/text v0.43.0 // indirect

replace github.com/fluxcapacitor/flux => ../..

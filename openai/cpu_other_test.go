//go:build !unix

package openai

func processCPU() int64 { return 0 }

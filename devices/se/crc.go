package se

// CRC16 is the checksum of the ATECC608 I2C protocol, computed as
// cryptoauthlib's atCRC does: polynomial 0x8005, initial value 0, data bits
// fed least-significant bit first, no final XOR. The chip sends and expects
// it little-endian; CRC16 returns it as a number, put it on the wire with
// appendCRC.
func CRC16(data []byte) uint16 {
	var crc uint16
	for _, b := range data {
		for shift := uint8(0x01); shift != 0; shift <<= 1 {
			dataBit := b&shift != 0
			crcBit := crc>>15 != 0
			crc <<= 1
			if dataBit != crcBit {
				crc ^= 0x8005
			}
		}
	}
	return crc
}

// appendCRC appends the little-endian CRC16 of data to data.
func appendCRC(data []byte) []byte {
	c := CRC16(data)
	return append(data, byte(c), byte(c>>8))
}

// checkCRC reports whether the last two bytes of packet are the
// little-endian CRC16 of the bytes before them.
func checkCRC(packet []byte) bool {
	if len(packet) < 3 {
		return false
	}
	n := len(packet) - 2
	c := CRC16(packet[:n])
	return packet[n] == byte(c) && packet[n+1] == byte(c>>8)
}

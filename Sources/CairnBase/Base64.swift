// Standard base64 (RFC 4648 with padding), as Go's encoding/json writes and reads `[]byte` fields: etcd's v3 JSON
// carries every key and value this way. Decoding reports the offset Go reports, so errors read the same.

package enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    package static func encode(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var iterator = bytes.makeIterator()
        while let first = iterator.next() {
            let second = iterator.next()
            let third = iterator.next()
            let group = UInt32(first) << 16 | UInt32(second ?? 0) << 8 | UInt32(third ?? 0)
            output.append(alphabet[Int(group >> 18 & 63)])
            output.append(alphabet[Int(group >> 12 & 63)])
            output.append(second == nil ? UInt8(ascii: "=") : alphabet[Int(group >> 6 & 63)])
            output.append(third == nil ? UInt8(ascii: "=") : alphabet[Int(group & 63)])
        }
        return output
    }

    /// Go's "illegal base64 data at input byte N".
    package struct DecodeError: Error, Equatable, CustomStringConvertible {
        package var offset: Int
        package init(offset: Int) { self.offset = offset }
        package var description: String { "illegal base64 data at input byte \(offset)" }
    }

    /// Decodes padded standard base64, skipping CR and LF as Go does; the error names the offset Go names.
    package static func decode(_ text: some Collection<UInt8>) throws(DecodeError) -> [UInt8] {
        let input = Array(text)
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 4 * 3)
        var position = 0
        func nextSignificant() -> Int? {
            while position < input.count, input[position] == 0x0A || input[position] == 0x0D { position += 1 }
            return position < input.count ? position : nil
        }
        while true {
            var quantum: [UInt8] = []
            while quantum.count < 4 {
                guard let at = nextSignificant() else {
                    // The input ends inside a quantum without its padding.
                    if quantum.isEmpty { return output }
                    throw DecodeError(offset: position - quantum.count)
                }
                let byte = input[at]
                position += 1
                if byte == UInt8(ascii: "=") {
                    guard quantum.count >= 2 else { throw DecodeError(offset: at) }
                    if quantum.count == 2 {
                        guard let second = nextSignificant() else { throw DecodeError(offset: input.count) }
                        guard input[second] == UInt8(ascii: "=") else { throw DecodeError(offset: second) }
                        position += 1
                    }
                    if let trailing = nextSignificant() { throw DecodeError(offset: trailing) }
                    Self.append(quantum, to: &output)
                    return output
                }
                let value = values[Int(byte)]
                guard value != 0xFF else { throw DecodeError(offset: at) }
                quantum.append(value)
            }
            Self.append(quantum, to: &output)
        }
    }

    private static func append(_ quantum: [UInt8], to output: inout [UInt8]) {
        let group = quantum.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (18 - 6 * UInt32($1.offset)) }
        output.append(UInt8(group >> 16 & 0xFF))
        if quantum.count > 2 { output.append(UInt8(group >> 8 & 0xFF)) }
        if quantum.count > 3 { output.append(UInt8(group & 0xFF)) }
    }
}

pub mod pb {
    tonic::include_proto!("mapreg.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mapreg_descriptor");
}

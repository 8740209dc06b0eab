#include "common/s3/s3_xml.h"

#include "gtest/gtest.h"

namespace pc::s3 {
namespace {

// The shape of AWS's documented ListObjectsV2 response.
constexpr char kPage[] = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name>
  <Prefix>p/</Prefix>
  <KeyCount>2</KeyCount>
  <MaxKeys>2</MaxKeys>
  <Delimiter>/</Delimiter>
  <IsTruncated>true</IsTruncated>
  <Contents>
    <Key>p/a &amp; b</Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
    <Size>434234</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <CommonPrefixes><Prefix>p/sub/</Prefix></CommonPrefixes>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>)";

TEST(S3XmlTest, ListPage) {
  auto page = ParseListObjectsV2(kPage);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->objects.size(), 1u);
  EXPECT_EQ(page->objects[0].key, "p/a & b");
  EXPECT_EQ(page->objects[0].size, 434234u);
  EXPECT_EQ(page->objects[0].etag, "\"fba9dede5f27731c9771645a39863328\"");
  EXPECT_EQ(page->objects[0].last_modified,
            absl::FromUnixMillis(1255369830000));
  EXPECT_EQ(page->common_prefixes, std::vector<std::string>{"p/sub/"});
  EXPECT_EQ(page->next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
}

TEST(S3XmlTest, LastPageHasNoToken) {
  auto page = ParseListObjectsV2(
      "<ListBucketResult><IsTruncated>false</IsTruncated>"
      "<NextContinuationToken>ignored</NextContinuationToken>"
      "</ListBucketResult>");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_TRUE(page->objects.empty());
  EXPECT_EQ(page->next_token, "");
}

TEST(S3XmlTest, ListRejectsWhatWouldMisleadTheCaller) {
  for (const char* bad : {
           "<Error><Code>x</Code></Error>",
           "<ListBucketResult><IsTruncated>true</IsTruncated></"
           "ListBucketResult>",
           "<ListBucketResult><IsTruncated>maybe</IsTruncated></"
           "ListBucketResult>",
           "<ListBucketResult><Contents><Size>1</Size></Contents></"
           "ListBucketResult>",
           "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents>"
           "</ListBucketResult>",
           "<ListBucketResult><Contents><Key>k</Key><Size>1</Size>"
           "<LastModified>yesterday</LastModified></Contents></"
           "ListBucketResult>",
       }) {
    EXPECT_FALSE(ParseListObjectsV2(bad).ok()) << bad;
  }
}

TEST(S3XmlTest, ErrorKeepsCodeAndMessageOnly) {
  S3ErrorInfo e = ParseErrorXml(
      "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>"
      "<Message>The request signature we calculated does not match.</Message>"
      "<SignatureProvided>abcdef0123</SignatureProvided>"
      "<StringToSign>AWS4-HMAC-SHA256...</StringToSign></Error>");
  EXPECT_EQ(e.code, "SignatureDoesNotMatch");
  EXPECT_EQ(e.message, "The request signature we calculated does not match.");
  EXPECT_EQ(ParseErrorXml("not xml").code, "");
  EXPECT_EQ(ParseErrorXml("<Error><Code>a\nb</Code></Error>").code, "a?b");
  EXPECT_EQ(ParseErrorXml("<Error><Message>" + std::string(500, 'm') +
                          "</Message></Error>")
                .message.size(),
            200u);
}

}  // namespace
}  // namespace pc::s3
